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


# Above the size below which files opened read-only are served through the page cache
LOW = "lower\n" * 20_000


def write_then_read(m):
    data = os.urandom(300_000)
    with open(m / "new", "wb") as f:
        f.write(data)
    with open(m / "low", "ab") as f:  # a lower file: copied up at open, then appended to
        f.write(b"tail")
    assert read(m / "new") == data
    assert read(m / "low") == LOW.encode() + b"tail"
    return data


@needs_passthrough
def test_upper_file_data_moves_without_read_or_write_requests(layers):
    ls = layers(lowers=[{"low": LOW}])
    with ls.ovlfs(extra_opts=("debug",)) as m:
        data = write_then_read(m)
        log = m.log()
    ops = opcodes(log)
    assert "OPEN" in ops and "CREATE" in ops
    assert "READ" not in ops and "WRITE" not in ops, sorted(set(ops))
    assert (ls.upper / "new").read_bytes() == data
    assert (ls.upper / "low").read_bytes() == LOW.encode() + b"tail"


def test_passthrough_0_serves_data_through_the_daemon(layers):
    ls = layers(lowers=[{"low": LOW}])
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


@needs_passthrough
def test_small_file_read_only_is_served_from_the_page_cache(layers):
    """A small upper file opened read-only is not put in passthrough: its first read is a
    READ, and a read through a later open is served from the page cache kept across opens
    (no request), where passthrough would cost a backing file per open."""
    ls = layers(lowers=[{}])
    data = os.urandom(2048)
    (ls.upper / "small").write_bytes(data)
    with ls.ovlfs(extra_opts=("debug",)) as m:
        assert read(m / "small") == data
        first = opcodes(m.log())
        assert read(m / "small") == data
        second = opcodes(m.log())[len(first):]
    assert "READ" in first
    assert "OPEN" in second and "READ" not in second, second


@needs_passthrough
def test_large_file_read_only_stays_in_passthrough(layers):
    ls = layers(lowers=[{}])
    data = os.urandom(1 << 20)
    (ls.upper / "big").write_bytes(data)
    with ls.ovlfs(extra_opts=("debug",)) as m:
        assert read(m / "big") == data
        ops = opcodes(m.log())
    assert "OPEN" in ops and "READ" not in ops, sorted(set(ops))


@needs_passthrough
def test_first_read_after_a_passthrough_write_sends_no_read(layers):
    """git's pattern: small files written through the mount (in passthrough), then read
    (git fsck). Their page cache holds none of the data, so each first read sent a READ.
    Now the first read goes through the layer file and leaves the data to the page cache
    when it is done, so neither it nor later reads send a READ; a rewrite (passthrough,
    which empties the page cache) shows at once."""
    ls = layers(lowers=[{}])
    files = {f"obj{i}": os.urandom(200 + 300 * i) for i in range(20)}
    with ls.ovlfs(extra_opts=("debug",)) as m:
        for name, data in files.items():
            (m / name).write_bytes(data)
        start = len(opcodes(m.log()))
        for name, data in files.items():
            assert read(m / name) == data
        first = opcodes(m.log())[start:]
        for name, data in files.items():
            assert read(m / name) == data
        second = opcodes(m.log())[start + len(first):]
        (m / "obj3").write_bytes(b"Z" * len(files["obj3"]))
        assert read(m / "obj3") == b"Z" * len(files["obj3"])
        assert read(m / "obj3") == b"Z" * len(files["obj3"])
    assert first.count("OPEN") == len(files) and "READ" not in first, sorted(set(first))
    assert "OPEN" in second and "READ" not in second, sorted(set(second))


@needs_passthrough
def test_cached_small_file_sees_a_write_through_passthrough(layers):
    """Pages cached by a read-only open, then a write open (passthrough) that changes the
    data without changing the size, and the mtime put back: the next read-only open must
    not serve the old pages (the passthrough open empties the page cache)."""
    ls = layers(lowers=[{}])
    (ls.upper / "f").write_bytes(b"a" * 100)
    with ls.ovlfs() as m:
        assert read(m / "f") == b"a" * 100
        st = os.stat(m / "f")
        with open(m / "f", "r+b") as w:
            w.write(b"b" * 100)
        os.utime(m / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
        assert read(m / "f") == b"b" * 100
        assert os.stat(m / "f").st_mtime_ns == st.st_mtime_ns


def test_small_file_modes_mix_both_ways(layers):
    """A cached read-only fd of a small file held while it is opened for writing, and a
    write fd held while it is opened read-only: the kernel keeps one I/O mode per inode,
    so each later open must follow the first one's (a conflict is an EIO)."""
    ls = layers(lowers=[{}])
    (ls.upper / "f").write_bytes(b"one")
    with ls.ovlfs() as m:
        with open(m / "f", "rb", buffering=0) as held:
            with open(m / "f", "r+b", buffering=0) as w:
                w.write(b"TWO")
            assert held.read() == b"TWO"
        with open(m / "f", "r+b", buffering=0) as w:
            with open(m / "f", "rb", buffering=0) as r:
                w.write(b"333")
                assert r.read() == b"333"
            w.seek(0)
            assert w.read() == b"333"
        assert read(m / "f") == b"333"
