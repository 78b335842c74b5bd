"""All names of a file are one inode (issue #15): the kernel overlayfs shows one inode per
upper file, so flock(2), shared mappings and the page cache are common to its names. Each
scenario runs on the kernel overlayfs and on ovlfs, on layers built alike, and the
observations must be equal. With each name a kernel inode of its own, flock through one name
did not exclude another, and a write through one name did not reach a mapping of the other.

Both mounts use index=off: lower hard links are separate inodes there (a copy-up of one name
separates it), which the lower-link scenario pins.
"""
import errno
import fcntl
import mmap
import os

import pytest

import helpers

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

LOWER = {"l1": "lower, two names\n", "l2": helpers.Hardlink("l1")}
UPPER = {"a": "x" * 5000, "d": {"b": helpers.Hardlink("a")}, "c": "plain\n"}


def _flock_excludes(p1, p2):
    """Whether an exclusive flock through p1 keeps one through p2 out."""
    f1 = os.open(p1, os.O_RDONLY)
    f2 = os.open(p2, os.O_RDONLY)
    try:
        fcntl.flock(f1, fcntl.LOCK_EX)
        try:
            fcntl.flock(f2, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except OSError as e:
            assert e.errno == errno.EWOULDBLOCK
            return True
    finally:
        os.close(f2)
        os.close(f1)


def _mapping_follows(p_map, p_write):
    """Writes through p_write seen in a shared mapping of p_map, and the reverse."""
    seen = []
    fm = os.open(p_map, os.O_RDWR)
    fw = os.open(p_write, os.O_RDWR)
    try:
        m = mmap.mmap(fm, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            os.pwrite(fw, b"WRITTEN", 100)
            seen.append(bytes(m[100:107]))
            m[200:207] = b"MAPPED!"
            seen.append(os.pread(fw, 7, 200))
        finally:
            m.close()
    finally:
        os.close(fw)
        os.close(fm)
    return seen


def _scenario(mnt):
    obs = {}
    obs["upper names flock"] = _flock_excludes(mnt / "a", mnt / "d" / "b")
    obs["upper names mmap"] = _mapping_follows(mnt / "a", mnt / "d" / "b")
    obs["lower names flock"] = _flock_excludes(mnt / "l1", mnt / "l2")
    os.link(mnt / "c", mnt / "d" / "c2")
    obs["new link flock"] = _flock_excludes(mnt / "c", mnt / "d" / "c2")
    obs["new link nlink"] = [os.stat(mnt / "c").st_nlink, os.stat(mnt / "d" / "c2").st_nlink]
    # git's pattern: a temporary name, a link to the final one, the temporary removed.
    tmp = mnt / "d" / "tmp_obj"
    tmp.write_bytes(b"object\n")
    fd = os.open(tmp, os.O_RDWR)
    os.link(tmp, mnt / "obj")
    os.unlink(tmp)
    os.pwrite(fd, b"OBJECT", 0)  # through the removed name's fd
    obs["after unlink, other name"] = [(mnt / "obj").read_bytes(), os.stat(mnt / "obj").st_nlink]
    os.close(fd)
    # The remaining name of a removed one: a write through it shows in a kept fd's fstat.
    fd = os.open(mnt / "d" / "c2", os.O_RDWR)
    os.unlink(mnt / "c")
    with open(mnt / "d" / "c2", "ab") as f:
        f.write(b"more\n")
    obs["fd of the other name"] = [os.fstat(fd).st_size, os.fstat(fd).st_nlink]
    os.close(fd)
    # A rename of one name, then the other removed: the renamed name is the file.
    os.rename(mnt / "d" / "b", mnt / "b-moved")
    os.unlink(mnt / "a")
    obs["renamed name"] = [os.stat(mnt / "b-moved").st_nlink,
                           (mnt / "b-moved").read_bytes()[100:107]]
    return obs


def test_names_of_a_file_are_one_inode_as_on_kernel(tmp_path):
    got = {}
    for who in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / who, [LOWER], UPPER)
        with getattr(ls, who)(extra_opts=("index=off",)) as m:
            got[who] = _scenario(m)
    assert got["ovlfs"] == got["kernel"]
    # What the kernel shows, spelled out.
    assert got["kernel"]["upper names flock"] is True
    assert got["kernel"]["upper names mmap"] == [b"WRITTEN", b"MAPPED!"]
    assert got["kernel"]["new link flock"] is True


@pytest.mark.parametrize("opts", [(), ("passthrough=0",), ("writeback=1",)])
def test_one_inode_in_every_io_mode(tmp_path, opts):
    """The same on ovlfs in each I/O mode: passthrough (default), served, writeback cache."""
    ls = helpers.build_layers(tmp_path, [LOWER], UPPER)
    with ls.ovlfs(extra_opts=opts) as m:
        assert _flock_excludes(m / "a", m / "d" / "b")
        assert _mapping_follows(m / "a", m / "d" / "b") == [b"WRITTEN", b"MAPPED!"]
        # A size change through one name shows through the other at once.
        os.truncate(m / "d" / "b", 10)
        assert os.stat(m / "a").st_size == 10
        with open(m / "a", "ab") as f:
            f.write(b"12345")
        assert os.stat(m / "d" / "b").st_size == 15
        assert (m / "d" / "b").read_bytes() == (m / "a").read_bytes()


def test_lower_link_copied_up_shows_its_own_count(tmp_path):
    """Without the index, a copy-up splits one name off a lower hard-link group: the name's
    cached attributes must follow (nlink 2 -> 1), as on the kernel; the fuzzer found it
    stale once hard links were cached like other files."""
    got = {}
    for who in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / who, [{"a": "x" * 100, "b": helpers.Hardlink("a")}])
        with getattr(ls, who)(extra_opts=("index=off",)) as m:
            before = [os.stat(m / n).st_nlink for n in ("a", "b")]
            os.close(os.open(m / "b", os.O_WRONLY))
            got[who] = before + [os.stat(m / n).st_nlink for n in ("a", "b")]
    assert got["ovlfs"] == got["kernel"] == [2, 2, 2, 1]
