"""-o writeback=1: the kernel's writeback cache; data written through the mount lands in the
upper layer, appends stay appends, and bad values are refused."""
import mmap
import os
import random
import subprocess

import pytest

from helpers import File, Hardlink, needs_fuse, ovlfs_binary

pytestmark = needs_fuse


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_writeback_writes_land_in_upper(layers):
    ls = layers(lowers=[{"a": "lower-a\n"}])
    with ls.ovlfs(extra_opts=("writeback=1",)) as m:
        with open(m / "a", "ab") as f:  # O_APPEND on a lower file: copy-up, then append
            f.write(b"appended\n")
        with open(m / "new", "wb") as f:
            for i in range(100):
                f.write(b"%d\n" % i)
        with open(m / "wo", "wb", buffering=0) as f:  # O_WRONLY: the kernel may read pages
            f.write(b"x" * 5000)
            f.seek(10)
            f.write(b"y")
        assert read(m / "a") == b"lower-a\nappended\n"
        assert read(m / "new") == b"".join(b"%d\n" % i for i in range(100))
        assert read(m / "wo") == b"x" * 10 + b"y" + b"x" * 4989
    assert read(ls.upper / "a") == b"lower-a\nappended\n"
    assert read(ls.upper / "wo") == b"x" * 10 + b"y" + b"x" * 4989
    assert read(ls.lowers[0] / "a") == b"lower-a\n"


def test_writeback_created_write_only_file_reads_pages(layers):
    """A file created O_WRONLY (open(2) with O_CREAT): once its page has left the cache, a
    partial write makes the kernel read the page through the writer's handle."""
    ls = layers(lowers=[{}])
    with ls.ovlfs(extra_opts=("writeback=1",)) as m:
        fd = os.open(m / "c", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"0123456789")
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # clean pages: dropped
            assert os.pwrite(fd, b"ab", 2) == 2
            os.fsync(fd)
        finally:
            os.close(fd)
        assert read(m / "c") == b"01ab456789"
    assert read(ls.upper / "c") == b"01ab456789"


def test_writeback_pages_written_back_through_an_o_direct_handle(layers):
    """The kernel writes cached pages back through any writable handle of the file, here
    an O_DIRECT one opened last, in a length O_DIRECT refuses (10 bytes)."""
    ls = layers(lowers=[{}])
    with ls.ovlfs(extra_opts=("writeback=1",)) as m:
        cached = os.open(m / "x", os.O_RDWR | os.O_CREAT, 0o644)
        os.write(cached, b"0123456789")
        direct = os.open(m / "x", os.O_WRONLY | os.O_DIRECT)
        try:
            os.close(cached)  # writes the dirty page back
        finally:
            os.close(direct)
        assert read(m / "x") == b"0123456789"
    assert read(ls.upper / "x") == b"0123456789"


def test_writeback_o_direct_write_moves_mtime(layers):
    """O_DIRECT with the writeback cache: the kernel owns the mtime, so it must see the
    write (its own direct I/O path, not FOPEN_DIRECT_IO, which leaves its mtime alone)."""
    ls = layers(lowers=[{"f": File("lower", mtime=1500000000)}])
    buf = mmap.mmap(-1, 4096)  # page-aligned
    buf.write(b"D" * 4096)
    with ls.ovlfs(extra_opts=("writeback=1",)) as m:
        fd = os.open(m / "f", os.O_RDWR | os.O_DIRECT)
        try:
            assert os.pwrite(fd, buf, 0) == 4096
        finally:
            os.close(fd)
        st = os.stat(m / "f")
        assert st.st_mtime_ns > 1500000000 * 10**9 and st.st_size == 4096
        assert read(m / "f") == b"D" * 4096
    assert os.stat(ls.upper / "f").st_mtime_ns == st.st_mtime_ns
    assert read(ls.upper / "f") == b"D" * 4096


@pytest.mark.parametrize("index", ["on", "off"])
def test_writeback_ctime_only_change_does_not_copy_up(layers, index):
    """A rename between two names of one lower file (nothing happens) and an unlink of a
    third change only the kernel's cached ctime; writing those times back must not copy the
    lower files up (that broke the hard link: each name then had its own copy, nlink 1).
    With the index the unlink counts (the group goes to the index, not to upper); without
    it the lower count stays, as on the kernel."""
    ls = layers(lowers=[{"a": "A", "n": Hardlink("a"), "d": {"m": Hardlink("a")}}])
    with ls.ovlfs(extra_opts=("writeback=1", f"index={index}")) as m:
        os.rename(m / "n", m / "a")
        os.unlink(m / "d" / "m")
        os.sync()  # the kernel writes back the times it keeps
        want = 2 if index == "on" else 3
        assert [os.stat(m / n).st_nlink for n in ("a", "n")] == [want, want]
        assert read(m / "a") == b"A" and sorted(os.listdir(m)) == ["a", "d", "n"]
    assert not [p for p in ls.upper.rglob("*") if p.is_file() and p.stat().st_size]


def _writer(root, seed):
    rng = random.Random(seed)
    for i in range(600):
        p = os.path.join(root, f"f{rng.randrange(6)}")
        r = rng.random()
        try:
            if r < 0.7:  # no O_TRUNC: see the README on concurrent O_TRUNC opens
                data = b"w%d-%d " % (seed, i) * rng.randint(1, 2000 if r < 0.3 else 1)
                fd = os.open(p, os.O_WRONLY)
                try:
                    os.pwrite(fd, data, rng.randint(0, 5000))
                finally:
                    os.close(fd)
            elif r < 0.8:
                os.chmod(p, rng.choice((0o600, 0o644)))
            else:
                with open(p, "rb") as f:
                    f.read()
        except OSError:
            os._exit(1)
    os._exit(0)


def test_writeback_mtime_on_disk_is_the_shown_one(layers):
    """Several writers on the same files: the kernel owns each file's mtime and sends it in
    a setattr, which may reach the daemon before a write of older cached pages. After an
    unmount the layer files have the mtimes (and sizes) the mount showed."""
    ls = layers(lowers=[{f"f{i}": f"lower {i}\n" * 50 for i in range(6)}])

    def seen(m):
        return {n: (os.stat(m / n).st_mtime_ns, os.stat(m / n).st_size)
                for n in sorted(os.listdir(m))}

    with ls.ovlfs(extra_opts=("writeback=1",)) as m:
        pids = []
        for seed in range(4):
            pid = os.fork()
            if pid == 0:
                _writer(str(m), seed)
            pids.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        assert codes == [0] * 4
        before = seen(m)
    with ls.ovlfs(extra_opts=("writeback=1",)) as m:
        assert seen(m) == before


def test_threaded_loop_serves(layers):
    """-o threaded=1: libfuse's multi-threaded loop instead of the default one."""
    ls = layers(lowers=[{"a": "A"}])
    with ls.ovlfs(extra_opts=("threaded=1",)) as m:
        with open(m / "a", "ab") as f:
            f.write(b"+")
        os.mkdir(m / "d")
        os.rename(m / "d", m / "e")
        assert read(m / "a") == b"A+" and os.listdir(m / "e") == []
    assert read(ls.upper / "a") == b"A+"


def test_writeback_bad_value_is_refused(tmp_path):
    binary = str(ovlfs_binary())
    (tmp_path / "l").mkdir()
    (tmp_path / "m").mkdir()
    r = subprocess.run([binary, "-f", "-o", f"lowerdir={tmp_path}/l,writeback=2",
                        str(tmp_path / "m")], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "writeback" in r.stderr
