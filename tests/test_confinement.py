"""Layer roots are a boundary even when a layer changes under the mount: a directory swapped
for a symlink to somewhere outside is never walked through, for reads or for writes."""
import errno
import os
import subprocess
import threading

from helpers import Symlink, expect_errno, needs_fuse

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


def outside_state(outside):
    """Everything about the outside tree that a write could change."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(outside):
        for name in [""] + dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = read(p) if os.path.isfile(p) and not os.path.islink(p) else None
            xattrs = {n: os.getxattr(p, n, follow_symlinks=False)
                      for n in os.listxattr(p, follow_symlinks=False)}
            state[p] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                        st.st_nlink, data, xattrs)
    return state


def make_outside(tmp_path):
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "file").write_bytes(b"SECRET")
    (outside / "dir" / "inner").write_bytes(b"INNER")
    (outside / "linked").write_bytes(b"LINKED")
    return outside


def symlink_layer(outside, depth):
    """Symlinks of every kind that leave the layer: absolute, relative through .., loops."""
    up = "../" * depth  # from the layer root up to tmp_path
    return {
        "abs_file": Symlink(str(outside / "file")), "abs_dir": Symlink(str(outside / "dir")),
        "rel_file": Symlink(f"{up}outside/file"), "rel_dir": Symlink(f"{up}outside/dir"),
        "dotdot": Symlink("d/../" + up + "outside/file"),
        "root": Symlink("/"),
        "loop1": Symlink("loop2"), "loop2": Symlink("loop1"), "self": Symlink("self"),
        "d": {"deep": Symlink("../" + up + "outside/dir/inner"), "x": "x"},
    }


NOFOLLOW_OPS = {
    "lchown": lambda p: os.chown(p, 1234, 4321, follow_symlinks=False),
    "lsetxattr": lambda p: os.setxattr(p, "trusted.k", b"v", follow_symlinks=False),
    "lutimes": lambda p: os.utime(p, ns=(1, 1), follow_symlinks=False),
    "link": lambda p: os.link(p, str(p) + ".hl", follow_symlinks=False),
    "rename": lambda p: os.rename(p, str(p) + ".mv"),
}


def test_symlinks_leading_outside_are_never_followed(layers, tmp_path):
    """Copy-ups, renames and links of symlinks that point outside (absolute, relative, with
    .. components, loops) change the symlinks only, never what they point to."""
    outside = make_outside(tmp_path)
    ls = layers(lowers=[symlink_layer(outside, 2)])  # tmp_path/set1/lower0
    for name in ("abs_file", "rel_file", "dotdot"):  # the targets are right
        assert read(ls.lowers[0] / name) == b"SECRET"
    assert read(ls.lowers[0] / "d" / "deep") == b"INNER"
    before = outside_state(outside)
    with ls.ovlfs() as m:
        for name in ("abs_file", "abs_dir", "rel_file", "rel_dir", "dotdot", "root", "loop1",
                     "self", "d/deep"):
            target = os.readlink(ls.lowers[0] / name)
            for op, fn in NOFOLLOW_OPS.items():
                p = m / name
                fn(p)
                if op == "rename":
                    os.rename(str(p) + ".mv", p)
            assert os.readlink(m / name) == target
            assert os.readlink(ls.upper / name) == target
            st = os.lstat(ls.upper / name)
            assert (st.st_uid, st.st_gid) == (1234, 4321)
        # loops end in ELOOP at the client, never hang the daemon
        for name in ("loop1", "loop2", "self"):
            expect_errno(errno.ELOOP, os.stat, m / name)
            expect_errno(errno.ELOOP, open, m / name, "rb")
        # .. in a path through the mount is resolved by the kernel, inside the mount
        assert read(m / "d" / ".." / "d" / "x") == b"x"
        expect_errno(errno.EEXIST, os.mkdir, os.path.join(m, "d", ".."))
    assert outside_state(outside) == before


FOLLOWER = """
import os, sys
m = sys.argv[1]
for name in ("abs_file", "rel_file", "dotdot", "d/deep"):
    with open(f"{m}/{name}", "ab") as f:
        f.write(b"+")
    os.chmod(f"{m}/{name}", 0o600)
for name in ("abs_dir", "rel_dir"):
    with open(f"{m}/{name}/new", "wb") as f:
        f.write(b"new")
"""


def test_clients_following_symlinks_get_no_help_from_the_daemon(layers, tmp_path):
    """A client may follow a layer's symlink (it is part of the merged view): run such a client
    where `outside` is covered by a scratch tmpfs, so that whatever changes in the real
    `outside` would have been done by the daemon."""
    outside = make_outside(tmp_path)
    ls = layers(lowers=[symlink_layer(outside, 2)])
    before = outside_state(outside)
    with ls.ovlfs() as m:
        subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f'mount -t tmpfs scratch "{outside}" && mkdir "{outside}/dir" && '
             f'echo -n S > "{outside}/file" && echo -n I > "{outside}/dir/inner" && '
             f'exec /usr/bin/python3 -c "$0" "{m}"', FOLLOWER], check=True, timeout=60)
    assert outside_state(outside) == before
    assert sorted(os.listdir(ls.upper)) == [], "following is the client's business"


def test_hard_link_to_a_file_outside_the_layer(layers, tmp_path):
    """A lower file that is a hard link of a file outside the layers (the link itself is
    inside): every change through the mount copies it up; the outside inode never changes.
    (index=off: each name is copied up on its own; with the index see the next test.)"""
    outside = make_outside(tmp_path)
    ls = layers(lowers=[{"keep": "k"}])
    for name in ("w", "t", "c", "x", "o", "a"):
        os.link(outside / "linked", ls.lowers[0] / name)
    before = outside_state(outside)
    with ls.ovlfs(extra_opts=("index=off",)) as m:
        with open(m / "w", "r+b") as f:
            f.write(b"X")
        os.truncate(m / "t", 0)
        os.chmod(m / "c", 0o600)
        os.setxattr(m / "x", "user.k", b"v")
        os.close(os.open(m / "o", os.O_RDWR))  # open for write, nothing written
        with open(m / "a", "ab") as f:
            f.write(b"+")
        assert read(m / "w") == b"XINKED" and read(m / "t") == b"" and read(m / "a") == b"LINKED+"
        for name in ("w", "t", "c", "x", "o", "a"):
            assert os.lstat(ls.upper / name).st_ino != os.lstat(outside / "linked").st_ino
    assert outside_state(outside) == before
    assert read(outside / "linked") == b"LINKED"


def test_hard_link_to_a_file_outside_the_layer_indexed(layers, tmp_path):
    """The same with the index (the default): the names in the layer stay one file, copied
    once into the index; the outside inode still never changes."""
    outside = make_outside(tmp_path)
    ls = layers(lowers=[{"keep": "k"}])
    for name in ("w", "t", "a"):
        os.link(outside / "linked", ls.lowers[0] / name)
    before = outside_state(outside)
    with ls.ovlfs(extra_opts=("index=on",)) as m:
        with open(m / "w", "r+b") as f:
            f.write(b"X")
        assert read(m / "t") == b"XINKED"
        os.truncate(m / "t", 0)
        with open(m / "a", "ab") as f:
            f.write(b"+")
        assert read(m / "w") == read(m / "t") == read(m / "a") == b"+"
        assert os.lstat(ls.upper / "w").st_ino != os.lstat(outside / "linked").st_ino
    assert outside_state(outside) == before
    assert read(outside / "linked") == b"LINKED"
