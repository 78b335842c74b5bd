"""Layer roots are a boundary even when a layer changes under the mount: a directory swapped
for a symlink to somewhere outside is never walked through, for reads or for writes."""
import errno
import os
import subprocess
import threading

from helpers import expect_errno, needs_fuse

pytestmark = needs_fuse


def read(path):
    with open(path, "rb") as f:
        return f.read()


def swap_for_symlink(directory, target):
    """Moves directory aside and puts a symlink to target in its place."""
    os.rename(directory, str(directory) + ".moved")
    os.symlink(target, directory)


def test_directory_swapped_for_symlink_while_mounted(layers, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a").write_bytes(b"SECRET")
    (outside / "secret").write_bytes(b"SECRET")
    ls = layers(lowers=[{"d": {"a": "inside", "b": "inside-b"}}])
    with ls.ovlfs() as m:
        assert read(m / "d" / "a") == b"inside"  # the kernel now knows d and d/a
        swap_for_symlink(ls.lowers[0] / "d", str(outside))
        # a name never looked up before: the daemon must not find it outside
        expect_errno(errno.ENOENT, os.lstat, m / "d" / "secret")
        # a known name: opening it walks the layer again, and stops at the symlink
        try:
            assert read(m / "d" / "a") != b"SECRET"
        except OSError as e:
            assert e.errno in (errno.ENOENT, errno.ESTALE, errno.ENOTDIR)
        # writes (copy-up of d/b, create in d) must not land outside either
        for attempt in (lambda: open(m / "d" / "b", "ab").close(),
                        lambda: open(m / "d" / "new", "wb").close()):
            try:
                attempt()
            except OSError as e:
                assert e.errno in (errno.ENOENT, errno.ESTALE, errno.ENOTDIR)
    assert sorted(os.listdir(outside)) == ["a", "secret"]
    assert read(outside / "a") == b"SECRET"
    assert not os.path.lexists(ls.upper / "d" / "new") or not os.path.islink(ls.upper / "d")


WRITER = """
import errno, sys
mnt, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    try:
        with open(f"{mnt}/d/f{i}", "ab") as f:
            f.write(b"+")
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ESTALE, errno.ENOTDIR, errno.EINVAL,
                           errno.EEXIST, errno.ELOOP):
            raise
"""


def test_swap_race_during_copy_ups(layers, tmp_path):
    """A directory swapped for a symlink in a loop while copy-ups run: the daemon never
    writes outside the layers. The writer runs where `outside` is covered by a scratch
    tmpfs: a client that follows the layer's symlink (as it may: the symlink is then part
    of the merged view) writes there, so anything in the real `outside` came from the
    daemon."""
    outside = tmp_path / "outside"
    outside.mkdir()
    files = {f"f{i}": f"data{i}" for i in range(50)}
    ls = layers(lowers=[{"d": dict(files)}])
    lower_d = ls.lowers[0] / "d"
    stop = threading.Event()

    def swapper():
        while not stop.is_set():
            os.rename(lower_d, str(lower_d) + ".real")
            os.symlink(str(outside), lower_d)
            os.unlink(lower_d)
            os.rename(str(lower_d) + ".real", lower_d)

    with ls.ovlfs() as m:
        t = threading.Thread(target=swapper)
        t.start()
        try:
            for _ in range(5):
                subprocess.run(
                    ["unshare", "-m", "--propagation", "private", "sh", "-c",
                     f'mount -t tmpfs scratch "{outside}" && exec /usr/bin/python3 -c "$0" '
                     f'"{m}" {len(files)}', WRITER], check=True, timeout=60)
        finally:
            stop.set()
            t.join()
    assert os.listdir(outside) == []
