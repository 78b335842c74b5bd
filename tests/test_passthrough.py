"""FUSE passthrough (the default where the kernel has it and the daemon runs as root): data
of files open on the upper layer moves between the kernel and the layer file without
READ/WRITE requests, and every way of opening a file stays correct beside it (the kernel
refuses, with EIO, an open whose I/O mode conflicts with the inode's)."""
import mmap
import os
import re
import subprocess

import pytest

from helpers import needs_fuse, ovlfs_binary

pytestmark = needs_fuse


def kernel_has_passthrough():
    with open("/proc/kallsyms") as f:
        return any(line.rstrip().endswith(" fuse_passthrough_open") for line in f)


needs_passthrough = pytest.mark.skipif(
    os.geteuid() != 0 or not kernel_has_passthrough(),
    reason="FUSE passthrough needs Linux 6.9+ and a daemon running as root")


def opcodes(log):
    return re.findall(r"opcode: ([A-Z_]+)", log)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write_then_read(m):
    data = os.urandom(300_000)
    with open(m / "new", "wb") as f:
        f.write(data)
    with open(m / "low", "ab") as f:  # a lower file: copied up at open, then appended to
        f.write(b"tail")
    assert read(m / "new") == data
    assert read(m / "low") == b"lower\ntail"
    return data


@needs_passthrough
def test_upper_file_data_moves_without_read_or_write_requests(layers):
    ls = layers(lowers=[{"low": "lower\n"}])
    with ls.ovlfs(extra_opts=("debug",)) as m:
        data = write_then_read(m)
        log = m.log()
    ops = opcodes(log)
    assert "OPEN" in ops and "CREATE" in ops
    assert "READ" not in ops and "WRITE" not in ops, sorted(set(ops))
    assert (ls.upper / "new").read_bytes() == data
    assert (ls.upper / "low").read_bytes() == b"lower\ntail"


def test_passthrough_0_serves_data_through_the_daemon(layers):
    ls = layers(lowers=[{"low": "lower\n"}])
    with ls.ovlfs(extra_opts=("debug", "passthrough=0")) as m:
        write_then_read(m)
        log = m.log()
    assert "WRITE" in opcodes(log)


def test_bad_passthrough_value_is_refused(tmp_path):
    (tmp_path / "l").mkdir()
    (tmp_path / "m").mkdir()
    r = subprocess.run([ovlfs_binary(), "-f", "-o", f"lowerdir={tmp_path}/l,passthrough=2",
                        str(tmp_path / "m")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "passthrough" in r.stderr


def test_open_after_a_second_name_while_open(layers):
    """An fd open in passthrough, then a hard link (files with several names are served
    uncached): a new open of the same name must still be marked passthrough (fuzz seed 1:
    the read gave EIO)."""
    ls = layers(lowers=[{}])
    with ls.ovlfs() as m:
        (m / "f").write_bytes(b"one")
        with open(m / "f", "rb", buffering=0) as held:
            os.link(m / "f", m / "g")
            assert read(m / "f") == b"one"
            with open(m / "g", "r+b") as g:
                g.write(b"TWO")
            assert read(m / "f") == b"TWO"
            assert held.read() == b"TWO"


def test_lower_open_stays_cached_beside_copy_up(layers):
    """A read-only fd of a lower file (served through the daemon, page cache kept) while
    another open copies the file up: opens of the node stay in one I/O mode, and the old
    fd reads the copy, as on the kernel overlayfs."""
    ls = layers(lowers=[{"a": "lower-a"}])
    with ls.ovlfs() as m:
        with open(m / "a", "rb", buffering=0) as old:
            assert old.read(2) == b"lo"
            with open(m / "a", "r+b") as w:
                w.write(b"UPPER")
            assert read(m / "a") == b"UPPER-a"
            old.seek(0)
            assert old.read() == b"UPPER-a"
        assert read(m / "a") == b"UPPER-a"


def test_shared_mmap_of_an_upper_file(layers):
    ls = layers(lowers=[{}])
    with ls.ovlfs() as m:
        (m / "f").write_bytes(b"\0" * 8192)
        with open(m / "f", "r+b") as f:
            mm = mmap.mmap(f.fileno(), 8192)
            mm[100:105] = b"hello"
            mm.flush()
            mm.close()
        assert read(m / "f")[100:105] == b"hello"
    assert (ls.upper / "f").read_bytes()[100:105] == b"hello"


def test_many_opens_and_closes_of_one_file(layers):
    """The backing file is shared by all opens of a node and let go with the last one."""
    ls = layers(lowers=[{}])
    with ls.ovlfs() as m:
        (m / "f").write_bytes(b"x")
        for i in range(200):
            fds = [os.open(m / "f", os.O_RDWR) for _ in range(3)]
            os.pwrite(fds[i % 3], b"%d" % i, 0)
            assert os.pread(fds[(i + 1) % 3], 8, 0).startswith(b"%d" % i)
            for fd in fds:
                os.close(fd)
        assert read(m / "f").startswith(b"199")
