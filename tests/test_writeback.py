"""-o writeback=1: the kernel's writeback cache; data written through the mount lands in the
upper layer, appends stay appends, and bad values are refused."""
import os
import subprocess

from helpers import needs_fuse, ovlfs_binary

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
