"""Write side of ovlfs, one test per behaviour of the writable-overlay issue: copy-up triggers
and non-triggers, what a copy-up copies, namespace operations (create, mkdir, mknod, symlink,
link, unlink, rmdir, rename/renameat2), setattr, xattrs, inode numbers, file I/O, locks and
statfs. Every test checks what the mount shows, the errno where one is expected, and the
resulting upper layer (whiteouts are char 0/0, opaque directories carry
trusted.overlay.opaque="y").

OVLFS_WRITE_BACKEND=kernel runs the file against the kernel overlayfs instead (the reference;
tests of ovlfs's intended differences are skipped there)."""
import errno
import fcntl
import mmap
import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from helpers import (Blk, Chr, Dir, FIXED_MTIME, File, Fifo, Hardlink, Opaque, Socket, Symlink,
                     Whiteout, expect_errno, needs_fuse, snapshot_upper)
from write_helpers import (BACKEND, IGNORED_UPPER_XATTRS, RENAME_EXCHANGE, RENAME_NOREPLACE,
                           RENAME_WHITEOUT, allocated, as_user, fallocate, is_whiteout,
                           lstat_or_none, make_sparse, mount, opaque_of, public_dir, read,
                           renameat2, tree, utimensat, work_leftovers)

pytestmark = needs_fuse
ovlfs_only = pytest.mark.skipif(BACKEND == "kernel", reason="ovlfs differs from the kernel here")
T = FIXED_MTIME
NS = 10**9
MiB = 1 << 20
DATA = b"0123456789"


def xattrs(path):
    """Every xattr of a layer entry but the kernel's bookkeeping ones."""
    return {n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False)
            if not n.startswith(IGNORED_UPPER_XATTRS)}


def now_ns():
    # Timestamps come from a coarse clock: allow a little slack below "now".
    return time.time_ns() - NS


def unchanged_upper(ls):
    before = snapshot_upper(ls.upper, mtime=True)
    return lambda: snapshot_upper(ls.upper, mtime=True) == before


# =========================================================================== copy-up triggers

LOWER = dict(mode=0o640, uid=7, gid=8, mtime=T + 5, xattrs={"user.k": "v", "user.x": "x"})


def _trigger(fn, name="a", data=DATA, **changed):
    return dict(fn=fn, name=name, data=data, changed=changed)


TRIGGERS = {
    "open_wronly": _trigger(lambda m: os.close(os.open(m / "a", os.O_WRONLY))),
    "open_rdwr": _trigger(lambda m: os.close(os.open(m / "a", os.O_RDWR))),
    "open_rdonly_trunc": _trigger(lambda m: os.close(os.open(m / "a", os.O_RDONLY | os.O_TRUNC)),
                                  data=b"", mtime="now"),
    "open_wronly_trunc": _trigger(lambda m: os.close(os.open(m / "a", os.O_WRONLY | os.O_TRUNC)),
                                  data=b"", mtime="now"),
    "chmod": _trigger(lambda m: os.chmod(m / "a", 0o604), mode=0o604),
    "chown": _trigger(lambda m: os.chown(m / "a", 9, 10), uid=9, gid=10),
    "utimens": _trigger(lambda m: utimensat(m / "a", (T + 100) * NS + 1, (T + 200) * NS + 2),
                        atime=(T + 100) * NS + 1, mtime=(T + 200) * NS + 2),
    "utimens_now": _trigger(lambda m: utimensat(m / "a", "now", "now"), atime="now", mtime="now"),
    "utimens_omit_atime": _trigger(lambda m: utimensat(m / "a", "omit", (T + 300) * NS),
                                   mtime=(T + 300) * NS),
    "utimens_omit_mtime": _trigger(lambda m: utimensat(m / "a", (T + 400) * NS, "omit"),
                                   atime=(T + 400) * NS),
    "truncate": _trigger(lambda m: os.truncate(m / "a", 4), data=b"0123", mtime="now"),
    "setxattr": _trigger(lambda m: os.setxattr(m / "a", "user.new", b"n"),
                         xattrs={"user.k": b"v", "user.x": b"x", "user.new": b"n"}),
    "removexattr": _trigger(lambda m: os.removexattr(m / "a", "user.x"),
                            xattrs={"user.k": b"v"}),
    "link_source": _trigger(lambda m: os.link(m / "a", m / "n"), nlink=2),
    "rename_source": _trigger(lambda m: renameat2(m / "a", m / "b"), name="b"),
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_copy_up_trigger(layers, trigger):
    tr = TRIGGERS[trigger]
    ls = layers(lowers=[{"a": File(DATA, **LOWER), "other": "o"}])
    lower_before = (read(ls.lowers[0] / "a"), xattrs(ls.lowers[0] / "a"))
    t0 = now_ns()
    u = ls.upper / tr["name"]
    with mount(ls) as m:
        tr["fn"](m)
        st = os.lstat(u)  # before anything reads the file (relatime would move atime)
        vis = os.lstat(m / tr["name"])
        assert read(m / tr["name"]) == tr["data"]
    ch = tr["changed"]
    assert stat.S_ISREG(st.st_mode) and read(u) == tr["data"]
    assert stat.S_IMODE(st.st_mode) == ch.get("mode", 0o640)
    assert (st.st_uid, st.st_gid) == (ch.get("uid", 7), ch.get("gid", 8))
    for field, default in (("mtime", (T + 5) * NS), ("atime", (T + 5) * NS)):
        want, got = ch.get(field, default), getattr(st, f"st_{field}_ns")
        if want == "now":
            assert got >= t0, f"{field} not updated"
        else:
            assert got == want, f"{field}: {got} != {want}"
    assert xattrs(u) == ch.get("xattrs", {"user.k": b"v", "user.x": b"x"})
    assert (stat.S_IMODE(vis.st_mode), vis.st_uid, vis.st_gid, vis.st_mtime_ns) == \
        (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
    assert st.st_nlink == ch.get("nlink", 1)
    if trigger == "link_source":
        assert os.lstat(ls.upper / "n").st_ino == st.st_ino
    if trigger == "rename_source":
        assert is_whiteout(ls.upper / "a"), "renamed lower file: no whiteout at the source"
    assert lstat_or_none(ls.upper / "other") is None, "an unrelated file was copied up"
    # the lower layer is never modified
    assert (read(ls.lowers[0] / "a"), xattrs(ls.lowers[0] / "a")) == lower_before
    assert os.lstat(ls.lowers[0] / "a").st_mode & 0o7777 == 0o640


NON_TRIGGERS = {
    "read": lambda m: read(m / "a"),
    "stat": lambda m: os.stat(m / "a"),
    "readdir": lambda m: (os.listdir(m), os.listdir(m / "d")),
    "getxattr": lambda m: os.getxattr(m / "a", "user.k"),
    "getxattr_absent": lambda m: expect_errno(errno.ENODATA, os.getxattr, m / "a", "user.no"),
    "listxattr": lambda m: os.listxattr(m / "a"),
    "access_w_ok": lambda m: os.access(m / "a", os.W_OK) or pytest.fail("access W_OK false"),
    "open_rdonly": lambda m: os.close(os.open(m / "a", os.O_RDONLY)),
    "readlink": lambda m: os.readlink(m / "l"),
    "stat_dir": lambda m: os.stat(m / "d"),
    "open_dir": lambda m: os.close(os.open(m / "d", os.O_RDONLY | os.O_DIRECTORY)),
    "fsync_rdonly": lambda m: _fsync_rdonly(m / "a"),
    "mmap_read": lambda m: _mmap_read(m / "a"),
    "seek_data": lambda m: _seek(m / "a"),
    "lookup_missing": lambda m: expect_errno(errno.ENOENT, os.stat, m / "d" / "nope"),
}


def _fsync_rdonly(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _mmap_read(p):
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
        assert mm[:] == DATA


def _seek(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
    finally:
        os.close(fd)


@pytest.mark.parametrize("op", sorted(NON_TRIGGERS))
def test_no_copy_up(layers, op):
    ls = layers(lowers=[{"a": File(DATA, **LOWER), "l": Symlink("a"), "d": {"x": "x"}}])
    same = unchanged_upper(ls)
    with mount(ls) as m:
        NON_TRIGGERS[op](m)
        assert same(), f"{op} changed the upper layer"
    assert os.listdir(ls.upper) == []


# =========================================================================== what is copied

def test_copy_up_copies_data_mode_owner_times_and_xattrs(layers):
    xa = {"user.bin": b"\x00\x01\xff", "trusted.t": b"t", "security.test": b"s",
          "trusted.overlay.overlay.esc": b"escaped", "user.big": b"v" * 3000}
    ls = layers(lowers=[{"f": File(b"payload" * 1000, mode=0o6755, uid=1000, gid=100,
                                   mtime=T + 1, xattrs=xa | {"trusted.overlay.private": b"p"})}])
    with mount(ls) as m:
        fd = os.open(m / "f", os.O_RDWR)
        os.close(fd)
        st = os.stat(m / "f")
        assert stat.S_IMODE(st.st_mode) == 0o6755
        assert os.getxattr(m / "f", "trusted.overlay.esc") == b"escaped"
    st = os.lstat(ls.upper / "f")
    assert read(ls.upper / "f") == b"payload" * 1000
    assert stat.S_IMODE(st.st_mode) == 0o6755, "setuid/setgid lost by the copy-up"
    assert (st.st_uid, st.st_gid) == (1000, 100)
    assert st.st_mtime_ns == st.st_atime_ns == (T + 1) * NS
    assert xattrs(ls.upper / "f") == xa, "xattrs: all but the overlay-private ones are copied"


def test_copy_up_symlink(layers):
    ls = layers(lowers=[{"l": Symlink("some/target", uid=1, gid=2, mtime=T + 3)}])
    with mount(ls) as m:
        os.chown(m / "l", 5, 6, follow_symlinks=False)
        assert os.readlink(m / "l") == "some/target"
        assert os.lstat(m / "l").st_uid == 5
    st = os.lstat(ls.upper / "l")
    assert stat.S_ISLNK(st.st_mode) and os.readlink(ls.upper / "l") == "some/target"
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (5, 6, (T + 3) * NS)


@pytest.mark.parametrize("kind", ["chr", "blk", "fifo", "sock"])
def test_copy_up_special_files(layers, kind):
    entry = {"chr": Chr(1, 3, uid=3, gid=4), "blk": Blk(7, 0, uid=3, gid=4),
             "fifo": Fifo(uid=3, gid=4), "sock": Socket(uid=3, gid=4)}[kind]
    ls = layers(lowers=[{"s": entry}])
    with mount(ls) as m:
        os.chmod(m / "s", 0o600)
        vis = os.lstat(m / "s")
    st = os.lstat(ls.upper / "s")
    assert stat.S_IFMT(st.st_mode) == stat.S_IFMT(vis.st_mode) == \
        stat.S_IFMT(os.lstat(ls.lowers[0] / "s").st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (3, 4)
    assert st.st_rdev == os.lstat(ls.lowers[0] / "s").st_rdev
    assert st.st_mtime_ns == T * NS


def test_open_lower_fifo_does_not_copy_up(layers):
    ls = layers(lowers=[{"p": Fifo(mode=0o666)}])
    with mount(ls) as m:
        fd = os.open(m / "p", os.O_RDWR | os.O_NONBLOCK)
        os.write(fd, b"through the pipe")
        assert os.read(fd, 100) == b"through the pipe"
        os.close(fd)
        expect_errno(errno.ENXIO, os.open, m / "p", os.O_WRONLY | os.O_NONBLOCK)
    assert os.listdir(ls.upper) == []


def test_sparse_copy_up_keeps_holes(layers):
    ls = layers(lowers=[{}])
    chunks = {0: b"head" * 1024, 30 * MiB: b"\xa5" * 4096, 64 * MiB - 4096: b"tail" * 1024}
    make_sparse(ls.lowers[0] / "big", 64 * MiB, chunks)
    with mount(ls) as m:
        fd = os.open(m / "big", os.O_RDWR)
        try:
            os.pwrite(fd, b"NEW", 40 * MiB)
            for off, data in chunks.items():
                assert os.pread(fd, len(data), off) == data
            assert os.pread(fd, 3, 40 * MiB) == b"NEW"
            assert os.pread(fd, 8, 10 * MiB) == b"\0" * 8
        finally:
            os.close(fd)
    u = ls.upper / "big"
    assert os.lstat(u).st_size == 64 * MiB
    # ovlfs copies the data extents only; the kernel copies whole 1 MiB chunks around them
    limit = 4 * MiB if BACKEND == "kernel" else 1 * MiB
    assert allocated(u) < limit, f"holes were filled: {allocated(u)} bytes allocated"
    with open(u, "rb") as f:
        for off, data in chunks.items():
            f.seek(off)
            assert f.read(len(data)) == data
        if BACKEND != "kernel":
            assert os.lseek(f.fileno(), 4096, os.SEEK_DATA) == 30 * MiB


def test_o_trunc_copy_up_copies_no_data(layers):
    ls = layers(lowers=[{"big": b"x" * (8 * MiB)}])
    with mount(ls) as m:
        with open(m / "big", "r+b") as f:  # r+ = O_RDWR without O_TRUNC: full copy
            pass
        os.close(os.open(m / "big", os.O_WRONLY | os.O_TRUNC))
        assert os.stat(m / "big").st_size == 0
    assert os.lstat(ls.upper / "big").st_size == 0 and allocated(ls.upper / "big") == 0
    assert os.lstat(ls.lowers[0] / "big").st_size == 8 * MiB


def test_parent_chain_copy_up(layers):
    ls = layers(lowers=[{"a": Dir({"b": Dir({"c": Dir({"f": "F"}, mode=0o751, uid=5, gid=6,
                                                     mtime=T + 3, xattrs={"user.c": "c"})},
                                          mode=0o750, uid=3, gid=4, mtime=T + 2,
                                          xattrs={"user.b": "b"}),
                                "sib": "s"}, mode=0o711, uid=1, gid=2, mtime=T + 1,
                               xattrs={"user.a": "a"})}])
    t0 = now_ns()
    with mount(ls) as m:
        with open(m / "a/b/c/new", "wb") as f:
            f.write(b"N")
        assert sorted(os.listdir(m / "a")) == ["b", "sib"]
        assert sorted(os.listdir(m / "a/b/c")) == ["f", "new"]
    for rel, mode, owner, mtime in (("a", 0o711, (1, 2), (T + 1) * NS),
                                    ("a/b", 0o750, (3, 4), (T + 2) * NS),
                                    ("a/b/c", 0o751, (5, 6), "now")):
        st = os.lstat(ls.upper / rel)
        assert stat.S_ISDIR(st.st_mode), rel
        assert stat.S_IMODE(st.st_mode) == mode, rel
        assert (st.st_uid, st.st_gid) == owner, rel
        if mtime == "now":
            assert st.st_mtime_ns >= t0
        else:
            assert st.st_mtime_ns == mtime, f"{rel}: copy-up of a child changed its mtime"
        assert opaque_of(ls.upper / rel) is None, f"{rel}: a copied-up directory is not opaque"
        assert xattrs(ls.upper / rel) == {f"user.{rel[-1]}": rel[-1].encode()}
    assert tree(ls.upper, upper=True) == {"a": "D", "a/b": "D", "a/b/c": "D", "a/b/c/new": "N"}


def test_fd_opened_before_copy_up_reads_new_data(layers):
    ls = layers(lowers=[{"a": "old data"}])
    with mount(ls) as m:
        r = os.open(m / "a", os.O_RDONLY)
        try:
            assert os.pread(r, 8, 0) == b"old data"
            w = os.open(m / "a", os.O_WRONLY)
            os.pwrite(w, b"NEW", 0)
            os.close(w)
            assert os.pread(r, 8, 0) == b"NEW data"
            os.truncate(m / "a", 3)
            assert os.pread(r, 8, 0) == b"NEW"
            assert os.fstat(r).st_size == 3
        finally:
            os.close(r)
    assert read(ls.upper / "a") == b"NEW"
    assert read(ls.lowers[0] / "a") == b"old data"


@ovlfs_only
def test_mapping_made_before_copy_up_sees_new_data(layers):
    """doc/semantics.md, "ovlfs's choices": a mapping made before the copy-up shows the copy
    too (gVisor's way; the kernel keeps the lower pages, D44)."""
    ls = layers(lowers=[{"a": "old data"}])
    with mount(ls) as m:
        with open(m / "a", "rb") as f, mmap.mmap(f.fileno(), 8, prot=mmap.PROT_READ) as mm:
            assert mm[:8] == b"old data"
            with open(m / "a", "r+b") as w:
                w.write(b"NEW")
            assert mm[:8] == b"NEW data"


def test_concurrent_copy_ups_happen_once(layers):
    ls = layers(lowers=[{"a": b"." * 64}])
    with mount(ls) as m:
        barrier = threading.Barrier(16)
        errors = []

        def worker(i):
            try:
                barrier.wait()
                fd = os.open(m / "a", os.O_RDWR)
                os.pwrite(fd, bytes([65 + i]), i)
                os.close(fd)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert read(m / "a") == bytes(range(65, 81)) + b"." * 48, "a write was lost"
    assert read(ls.upper / "a") == bytes(range(65, 81)) + b"." * 48
    assert not work_leftovers(ls.work)


def test_copied_up_directory_stays_merged(layers):
    ls = layers(lowers=[{"d": Dir({"x": "x"}, mode=0o755)}, {"d": {"y": "y"}}])
    with mount(ls) as m:
        os.chmod(m / "d", 0o700)
        assert sorted(os.listdir(m / "d")) == ["x", "y"]
        assert os.stat(m / "d").st_nlink == 1, "a merged directory reports nlink 1"
    assert opaque_of(ls.upper / "d") is None and os.listdir(ls.upper / "d") == []
    assert stat.S_IMODE(os.lstat(ls.upper / "d").st_mode) == 0o700


def test_copied_up_directory_reports_merged_nlink(layers):
    """A directory living in one lower layer reports its real nlink; once copied up it is
    merged (upper + lower) and reports 1, as the kernel does, also when the copy-up came
    from an operation on a child."""
    ls = layers(lowers=[{"d": {"s": {}, "f": "F"}, "e": {"s": {}, "f": "F"}}])
    with mount(ls) as m:
        assert os.stat(m / "d").st_nlink == 3
        assert os.stat(m / "e").st_nlink == 3
        os.chmod(m / "d/f", 0o600)  # copies up d
        with open(m / "e/new", "wb"):  # copies up e
            pass
        assert os.stat(m / "d").st_nlink == 1
        assert os.stat(m / "e").st_nlink == 1


def test_stale_work_directory_leftovers_are_cleaned_at_mount(layers):
    ls = layers(lowers=[{"a": "A"}])
    (ls.work / "work").mkdir()
    (ls.work / "work" / "#stale").write_bytes(b"half a copy")
    (ls.work / "work" / "#dir").mkdir()
    (ls.work / "work" / "#dir" / "x").write_bytes(b"x")
    with mount(ls) as m:
        assert os.listdir(ls.work / "work") == []
        os.chmod(m / "a", 0o600)
    assert os.listdir(ls.work / "work") == []
    assert tree(ls.upper, upper=True) == {"a": "A"}


# =========================================================================== create & co.

def test_create_and_o_excl(layers):
    ls = layers(lowers=[{"a": "A", "w": "hidden"}], upper={"w": Whiteout()})
    with mount(ls) as m:
        expect_errno(errno.EEXIST, os.open, m / "a", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        fd = os.open(m / "n", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
        os.write(fd, b"new")
        os.close(fd)
        expect_errno(errno.EEXIST, os.open, m / "n", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(os.open(m / "w", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        assert read(m / "w") == b"" and read(m / "a") == b"A"
        # O_CREAT without O_EXCL on a lower file opens (and copies up) the existing file
        fd = os.open(m / "a", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        os.write(fd, b"+")
        os.close(fd)
    assert tree(ls.upper, upper=True) == {"n": "new", "w": "", "a": "A+"}
    assert stat.S_IMODE(os.lstat(ls.upper / "n").st_mode) == 0o640
    assert stat.S_IMODE(os.lstat(ls.upper / "a").st_mode) == 0o644


def test_create_over_whiteout(layers):
    ls = layers(lowers=[{"a": "old", "d": {"x": "x"}}], upper={"a": Whiteout(), "d": Whiteout()})
    with mount(ls) as m:
        expect_errno(errno.ENOENT, os.stat, m / "a")
        with open(m / "a", "xb") as f:
            f.write(b"fresh")
        assert read(m / "a") == b"fresh"
        os.symlink("target", m / "d")
        assert os.readlink(m / "d") == "target"
    assert tree(ls.upper, upper=True) == {"a": "fresh", "d": "-> target"}


def test_mkdir_over_whiteout_is_opaque(layers):
    ls = layers(lowers=[{"d": {"x": "x", "sub": {"y": "y"}}}], upper={"d": Whiteout()})
    with mount(ls) as m:
        os.mkdir(m / "d")
        assert os.listdir(m / "d") == []
        expect_errno(errno.ENOENT, os.stat, m / "d/x")
        os.mkdir(m / "d/sub")
        assert os.listdir(m / "d/sub") == []
    assert opaque_of(ls.upper / "d") == b"y"
    assert tree(ls.upper, upper=True) == {"d": "D:opaque", "d/sub": "D"}


# A directory made in a merged one (here: the root): opaque with ovlfs's default
# redirect_dir=on, as the kernel marks it with redirect_dir=on; KERNEL_OPTS has it off.
NEW_DIR = "D:opaque" if BACKEND == "ovlfs" else "D"


def test_mkdir_mknod_symlink_link(layers):
    ls = layers(lowers=[{"a": "A", "low": {}}])
    mask = os.umask(0o022)
    os.umask(mask)
    with mount(ls) as m:
        os.mkdir(m / "dir", 0o750)
        os.mknod(m / "low/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(m / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
        os.mkfifo(m / "fifo", 0o640)
        os.symlink("../a", m / "low/sym")
        os.link(m / "a", m / "low/hard")
        expect_errno(errno.EEXIST, os.mkdir, m / "a")
        expect_errno(errno.EEXIST, os.symlink, "x", m / "a")
        expect_errno(errno.EEXIST, os.link, m / "a", m / "low/hard")
        expect_errno(errno.ENOENT, os.link, m / "nothere", m / "x")
        assert read(m / "low/sym") == b"A"
        assert os.stat(m / "low/hard").st_nlink == 2
    assert tree(ls.upper, upper=True) == {
        "dir": NEW_DIR, "low": "D", "low/null": "chr 1:3", "blk": "blk 7:0", "fifo": "fifo",
        "low/sym": "-> ../a", "a": "A", "low/hard": "A"}
    assert stat.S_IMODE(os.lstat(ls.upper / "dir").st_mode) == 0o750 & ~mask
    assert stat.S_IMODE(os.lstat(ls.upper / "fifo").st_mode) == 0o640 & ~mask
    assert os.lstat(ls.upper / "a").st_ino == os.lstat(ls.upper / "low/hard").st_ino
    assert opaque_of(ls.upper / "low") is None


def test_mknod_whiteout_shaped_is_eperm(layers):
    ls = layers(lowers=[{"a": "A", "d": {}}])
    with mount(ls) as m:
        expect_errno(errno.EPERM, os.mknod, m / "n", stat.S_IFCHR | 0o600, 0)
        expect_errno(errno.EPERM, os.mknod, m / "d/n", stat.S_IFCHR | 0o600, 0)
        os.unlink(m / "a")
        expect_errno(errno.EPERM, os.mknod, m / "a", stat.S_IFCHR | 0o600, 0)
        expect_errno(errno.ENOENT, os.stat, m / "a")
        assert os.listdir(m) == ["d"]
    assert tree(ls.upper, upper=True) == {"a": "W"}


def test_link_of_directory_is_eperm(layers):
    ls = layers(lowers=[{"d": {}}])
    with mount(ls) as m:
        expect_errno(errno.EPERM, os.link, m / "d", m / "n")
        os.mkdir(m / "e")
        expect_errno(errno.EPERM, os.link, m / "e", m / "f")
    assert tree(ls.upper, upper=True) == {"e": NEW_DIR}


def _run_as(uid, gid, script):
    r = as_user(uid, gid, sys.executable, "-c", script)
    assert r.returncode == 0, r.stderr


def test_new_objects_belong_to_the_caller(layers):
    ls = layers(lowers=[{"pub": Dir({}, mode=0o777)}])
    with public_dir() as pub, mount(ls, mnt=pub / "m") as m:
        _run_as(1000, 1001, f"""
import os
p = {str(m / 'pub')!r}
open(p + '/f', 'w').close()
os.mkdir(p + '/d')
os.symlink('f', p + '/s')
os.mkfifo(p + '/p')
os.mkdir(p + '/d/inner')
""")
        for rel in ("pub/f", "pub/d", "pub/s", "pub/p", "pub/d/inner"):
            st = os.lstat(m / rel)
            assert (st.st_uid, st.st_gid) == (1000, 1001), rel
    for rel in ("pub/f", "pub/d", "pub/s", "pub/p", "pub/d/inner"):
        st = os.lstat(ls.upper / rel)
        assert (st.st_uid, st.st_gid) == (1000, 1001), f"upper {rel}"
    st = os.lstat(ls.upper / "pub")  # the copied-up parent keeps its owner
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o777)


def test_setgid_directory_is_honoured(layers):
    ls = layers(lowers=[{"sg": Dir({}, mode=0o2777, gid=1234)}])
    with public_dir() as pub, mount(ls, mnt=pub / "m") as m:
        _run_as(1000, 1000, f"""
import os
p = {str(m / 'sg')!r}
open(p + '/f', 'w').close()
os.mkdir(p + '/d', 0o755)
""")
        f, d = os.lstat(m / "sg/f"), os.lstat(m / "sg/d")
        assert (f.st_uid, f.st_gid) == (1000, 1234)
        assert (d.st_uid, d.st_gid) == (1000, 1234) and d.st_mode & stat.S_ISGID
    f, d = os.lstat(ls.upper / "sg/f"), os.lstat(ls.upper / "sg/d")
    assert (f.st_uid, f.st_gid) == (1000, 1234)
    assert (d.st_uid, d.st_gid) == (1000, 1234) and d.st_mode & stat.S_ISGID


def test_unprivileged_caller_cannot_write_where_mode_forbids(layers):
    ls = layers(lowers=[{"ro": Dir({"f": File("F", mode=0o644)}, mode=0o755)}])
    with public_dir() as pub, mount(ls, mnt=pub / "m") as m:
        r = as_user(1000, 1000, sys.executable, "-c", f"""
import errno, os
p = {str(m / 'ro')!r}
for fn in (lambda: open(p + '/new', 'w'), lambda: open(p + '/f', 'r+b'),
           lambda: os.unlink(p + '/f'), lambda: os.chmod(p + '/f', 0o777)):
    try:
        fn()
    except OSError as e:
        assert e.errno in (errno.EACCES, errno.EPERM), e
    else:
        raise SystemExit('allowed')
""")
        assert r.returncode == 0, r.stderr + r.stdout
    assert os.listdir(ls.upper) == [], "a refused operation copied something up"


# =========================================================================== unlink & rmdir

def test_unlink(layers):
    ls = layers(lowers=[{"low": "L", "cop": "C", "d": {"x": "x"}}, {"deep": "D"}],
                upper={"up": "U"})
    with mount(ls) as m:
        os.chmod(m / "cop", 0o600)
        for name in ("low", "cop", "up", "deep", "d/x"):
            os.unlink(m / name)
            expect_errno(errno.ENOENT, os.stat, m / name)
        expect_errno(errno.ENOENT, os.unlink, m / "low")
        expect_errno(errno.EISDIR, os.unlink, m / "d")
        assert os.listdir(m) == ["d"] and os.listdir(m / "d") == []
    assert tree(ls.upper, upper=True) == {"low": "W", "cop": "W", "deep": "W", "d": "D",
                                          "d/x": "W"}
    assert read(ls.lowers[0] / "low") == b"L"


def test_rmdir_not_empty(layers):
    ls = layers(lowers=[{"m": {"x": "x"}, "l": {"x": "x"}, "c": {"null": Chr(1, 3)}}],
                upper={"m": {"u": Whiteout()}, "p": {"f": "f"}})
    same = unchanged_upper(ls)
    with mount(ls) as m:
        for d in ("m", "l", "c", "p"):
            expect_errno(errno.ENOTEMPTY, os.rmdir, m / d)
        expect_errno(errno.ENOTDIR, os.rmdir, m / "p/f")
        expect_errno(errno.ENOENT, os.rmdir, m / "nothere")
        assert same()


def test_rmdir_of_directory_holding_only_whiteouts(layers):
    ls = layers(lowers=[{"d": {"x": "x", "y": "y"}, "e": {"a": "a"}}],
                upper={"d": {"x": Whiteout(), "y": Whiteout()}})
    with mount(ls) as m:
        os.rmdir(m / "d")
        expect_errno(errno.ENOENT, os.stat, m / "d")
        os.unlink(m / "e/a")
        os.rmdir(m / "e")
        assert os.listdir(m) == []
    assert tree(ls.upper, upper=True) == {"d": "W", "e": "W"}, "whiteouts inside not purged"


def test_rmdir_lower_and_pure_upper(layers):
    ls = layers(lowers=[{"empty": {}, "d": {"x": "x"}}], upper={"pure": {}})
    with mount(ls) as m:
        os.rmdir(m / "empty")
        os.rmdir(m / "pure")
        os.mkdir(m / "new")
        os.rmdir(m / "new")
        os.mkdir(m / "d/n")
        os.rmdir(m / "d/n")
        assert sorted(os.listdir(m)) == ["d"]
    assert tree(ls.upper, upper=True) == {"empty": "W", "d": "D"}


def test_rmdir_then_mkdir_over_the_whiteout(layers):
    ls = layers(lowers=[{"d": {"x": "x"}}])
    with mount(ls) as m:
        os.unlink(m / "d/x")
        os.rmdir(m / "d")
        os.mkdir(m / "d")
        assert os.listdir(m / "d") == []
        os.rmdir(m / "d")
        expect_errno(errno.ENOENT, os.stat, m / "d")
    assert tree(ls.upper, upper=True) == {"d": "W"}


# =========================================================================== rename

def test_rename_lower_file(layers):
    ls = layers(lowers=[{"a": File("A", mode=0o600, mtime=T + 1), "d": {"b": "B"}}])
    with mount(ls) as m:
        os.rename(m / "a", m / "z")
        os.rename(m / "d/b", m / "b")
        assert sorted(os.listdir(m)) == ["b", "d", "z"] and os.listdir(m / "d") == []
        expect_errno(errno.ENOENT, os.stat, m / "a")
    assert tree(ls.upper, upper=True) == {"a": "W", "z": "A", "d": "D", "d/b": "W", "b": "B"}
    st = os.lstat(ls.upper / "z")
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o600, (T + 1) * NS)


def test_rename_pure_upper_file_leaves_no_whiteout(layers):
    ls = layers(lowers=[{"w": "hidden"}], upper={"u": "U", "v": "V", "w": Whiteout()})
    with mount(ls) as m:
        os.rename(m / "u", m / "x")
        os.rename(m / "v", m / "w")
        assert sorted(os.listdir(m)) == ["w", "x"] and read(m / "w") == b"V"
    assert tree(ls.upper, upper=True) == {"x": "U", "w": "V"}


def test_rename_over_lower_file_and_over_whiteout(layers):
    ls = layers(lowers=[{"a": "A", "b": "B", "c": "C", "w": "hidden"}], upper={"w": Whiteout()})
    with mount(ls) as m:
        os.rename(m / "a", m / "b")
        os.rename(m / "c", m / "w")
        assert sorted(os.listdir(m)) == ["b", "w"]
        assert (read(m / "b"), read(m / "w")) == (b"A", b"C")
    assert tree(ls.upper, upper=True) == {"a": "W", "b": "A", "c": "W", "w": "C"}


def test_renameat2_noreplace(layers):
    ls = layers(lowers=[{"a": "A", "b": "B", "w": "hidden"}], upper={"w": Whiteout()})
    with mount(ls) as m:
        expect_errno(errno.EEXIST, renameat2, m / "a", m / "b", RENAME_NOREPLACE)
        assert os.listdir(ls.upper) == ["w"], "a failed rename copied up"
        renameat2(m / "a", m / "w", RENAME_NOREPLACE)
        renameat2(m / "b", m / "c", RENAME_NOREPLACE)
        assert sorted(os.listdir(m)) == ["c", "w"]
    assert tree(ls.upper, upper=True) == {"a": "W", "b": "W", "w": "A", "c": "B"}


def test_renameat2_exchange(layers):
    ls = layers(lowers=[{"a": "A", "b": "B", "d": {"x": "x"}}], upper={"u": "U"})
    with mount(ls) as m:
        renameat2(m / "a", m / "b", RENAME_EXCHANGE)
        assert (read(m / "a"), read(m / "b")) == (b"B", b"A")
        renameat2(m / "u", m / "a", RENAME_EXCHANGE)
        assert (read(m / "a"), read(m / "u")) == (b"U", b"B")
        expect_errno(errno.ENOENT, renameat2, m / "a", m / "nothere", RENAME_EXCHANGE)
        os.mkdir(m / "e")
        renameat2(m / "e", m / "u", RENAME_EXCHANGE)  # a directory and a file
        assert stat.S_ISDIR(os.stat(m / "u").st_mode) and read(m / "e") == b"B"
    # a pure-upper directory moved into a merged parent (the root) is made opaque (rule 31)
    assert tree(ls.upper, upper=True) == {"a": "U", "b": "A", "u": "D:opaque", "e": "B"}


@pytest.mark.parametrize("flags", [RENAME_WHITEOUT, 8, 1 << 20,
                                   RENAME_NOREPLACE | RENAME_EXCHANGE])
def test_renameat2_other_flags_einval(layers, flags):
    ls = layers(lowers=[{"a": "A"}])
    with mount(ls) as m:
        expect_errno(errno.EINVAL, renameat2, m / "a", m / "b", flags)
        assert os.listdir(m) == ["a"]
    assert os.listdir(ls.upper) == []


def test_rename_errors(layers):
    ls = layers(lowers=[{"f": "F", "d": {}, "full": {"x": "x"}, "g": "G"}],
                upper={"m": {"u": "u"}})
    same = unchanged_upper(ls)
    with mount(ls) as m:
        expect_errno(errno.EISDIR, os.rename, m / "f", m / "d")
        expect_errno(errno.ENOTDIR, os.rename, m / "m", m / "f")
        expect_errno(errno.ENOTEMPTY, os.rename, m / "m", m / "full")
        expect_errno(errno.EINVAL, os.rename, m / "m", m / "m/sub")
        expect_errno(errno.EINVAL, os.rename, m / "d", m / "d/sub")
        expect_errno(errno.ENOENT, os.rename, m / "nothere", m / "x")
        expect_errno(errno.ENOTDIR, os.rename, m / "f", m / "g/x")
        assert same(), "a failed rename changed the upper layer"
        os.rename(m / "f", m / "f")  # same name: nothing happens
        assert same()


def test_rename_onto_merged_directory_that_is_empty(layers):
    ls = layers(lowers=[{"t": {"x": "x"}}], upper={"t": {"x": Whiteout()}, "s": {"f": "f"}})
    with mount(ls) as m:
        os.rename(m / "s", m / "t")
        assert os.listdir(m / "t") == ["f"]
        expect_errno(errno.ENOENT, os.stat, m / "s")
    up = tree(ls.upper, upper=True)
    assert up["t/f"] == "f" and "s" not in up and up.get("t/x") in (None, "W")
    assert up["t"] == "D:opaque" or "t/x" in up, "the lower t/x could show through"


# These rename a lower or merged directory by copying it (-o redirect_dir=off);
# test_redirect_write.py has the default, redirect_dir=on, against the kernel.
COPY_DIRS = ("redirect_dir=off",)


@ovlfs_only

def test_rename_lower_directory(layers):
    ls = layers(lowers=[{"d": Dir({"x": File("x", mode=0o600, uid=3, mtime=T + 1),
                                   "s": Dir({"y": "y", "l": Symlink("../x")}, mode=0o700)},
                                  mode=0o750, uid=5, mtime=T + 2)}])
    with mount(ls, ovlfs_opts=COPY_DIRS) as m:
        os.rename(m / "d", m / "e")
        expect_errno(errno.ENOENT, os.stat, m / "d")
        assert sorted(os.listdir(m)) == ["e"]
        assert sorted(os.listdir(m / "e")) == ["s", "x"] and read(m / "e/s/l") == b"x"
    assert tree(ls.upper, upper=True) == {"d": "W", "e": "D:opaque", "e/x": "x", "e/s": "D",
                                          "e/s/y": "y", "e/s/l": "-> ../x"}
    for rel, mode, uid, mtime in (("e", 0o750, 5, T + 2), ("e/x", 0o600, 3, T + 1),
                                  ("e/s", 0o700, 0, T)):
        st = os.lstat(ls.upper / rel)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime_ns) == (mode, uid, mtime * NS)


@ovlfs_only
def test_rename_merged_directory(layers):
    ls = layers(lowers=[{"d": {"x": "X", "gone": "G", "s": {"y": "y"}}}, {"d": {"z": "Z"}}],
                upper={"d": {"u": "U", "gone": Whiteout()}})
    with mount(ls, ovlfs_opts=COPY_DIRS) as m:
        os.rename(m / "d", m / "e")
        assert sorted(os.listdir(m / "e")) == ["s", "u", "x", "z"]
        expect_errno(errno.ENOENT, os.stat, m / "e/gone")
        expect_errno(errno.ENOENT, os.stat, m / "d")
        os.rename(m / "e", m / "d")  # and back: now a pure-upper directory over the lower d
        assert sorted(os.listdir(m / "d")) == ["s", "u", "x", "z"]
    # No whiteout may stay inside the moved, opaque directory: it hides nothing there, and
    # the kernel lists whiteouts of a directory that merges nothing (rule 19), so d/gone
    # would show up as a name that cannot be looked up when the kernel mounts this upper.
    assert tree(ls.upper, upper=True) == {"d": "D:opaque", "d/u": "U", "d/x": "X", "d/z": "Z",
                                          "d/s": "D", "d/s/y": "y"}


@ovlfs_only
def test_rename_lower_directory_into_another(layers):
    ls = layers(lowers=[{"a": {"f": "F"}, "b": {"c": {"old": "o"}}}])
    with mount(ls, ovlfs_opts=COPY_DIRS) as m:
        os.rename(m / "a", m / "b/c/a")
        assert os.listdir(m) == ["b"] and sorted(os.listdir(m / "b/c")) == ["a", "old"]
        expect_errno(errno.EINVAL, os.rename, m / "b", m / "b/c/a/b")
    assert tree(ls.upper, upper=True) == {"a": "W", "b": "D", "b/c": "D", "b/c/a": "D:opaque",
                                          "b/c/a/f": "F"}


def test_rename_pure_upper_directory(layers):
    ls = layers(lowers=[{"m": {"x": "x"}}], upper={"p": {"f": "f", "s": {"g": "g"}}})
    ino = {rel: os.lstat(ls.upper / rel).st_ino for rel in ("p", "p/f", "p/s/g")}
    with mount(ls) as m:
        os.rename(m / "p", m / "q")
        assert sorted(os.listdir(m / "q")) == ["f", "s"]
        expect_errno(errno.ENOENT, os.stat, m / "p")
    # no whiteout at the source (the name is not below); opaque in its merged parent (rule 31)
    assert tree(ls.upper, upper=True) == {"q": "D:opaque", "q/f": "f", "q/s": "D",
                                          "q/s/g": "g"}
    # moved, not copied: the upper inodes are the same
    assert {rel: os.lstat(ls.upper / rel.replace("p", "q", 1)).st_ino for rel in ino} == ino


def test_rename_pure_upper_directory_into_merged_parent_is_opaque(layers):
    ls = layers(lowers=[{"m": {"n": {"hidden": "h"}}}], upper={"m": {}, "p": {"f": "f"}})
    with mount(ls) as m:
        os.unlink(m / "m/n/hidden")
        os.rmdir(m / "m/n")
        os.rename(m / "p", m / "m/n")
        assert os.listdir(m / "m/n") == ["f"], "the lower m/n/hidden shows through"
    up = tree(ls.upper, upper=True)
    assert up["m/n"] == "D:opaque" and up["m/n/f"] == "f"


# =========================================================================== setattr

def test_setattr_after_copy_up(layers):
    ls = layers(lowers=[{"a": File(DATA, mode=0o644, uid=1, gid=1)}])
    with mount(ls) as m:
        os.chmod(m / "a", 0o4750)
        os.chown(m / "a", 2, 3)  # clears setuid, as on any filesystem
        os.truncate(m / "a", 20)
        utimensat(m / "a", (T + 7) * NS, (T + 8) * NS)
        os.chmod(m / "a", 0o600)
        utimensat(m / "a", "omit", (T + 9) * NS)
        st = os.stat(m / "a")
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size) == (0o600, 2, 3, 20)
        assert (st.st_atime_ns, st.st_mtime_ns) == ((T + 7) * NS, (T + 9) * NS)
    st = os.lstat(ls.upper / "a")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size) == (0o600, 2, 3, 20)
    assert (st.st_atime_ns, st.st_mtime_ns) == ((T + 7) * NS, (T + 9) * NS)
    assert read(ls.upper / "a") == DATA + b"\0" * 10


def test_chown_clears_setuid_like_any_filesystem(layers):
    ls = layers(lowers=[{"s": File("S", mode=0o6755)}])
    with mount(ls) as m:
        os.chown(m / "s", 5, 5)
        assert stat.S_IMODE(os.stat(m / "s").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(ls.upper / "s").st_mode) == 0o755


# =========================================================================== xattrs

def test_setxattr_and_removexattr_copy_up(layers):
    ls = layers(lowers=[{"f": File("F", xattrs={"user.x": "1", "user.y": "2"}),
                         "d": Dir({"c": "c"}, xattrs={"user.d": "d"})}])
    with mount(ls) as m:
        os.setxattr(m / "f", "user.new", b"value")
        os.removexattr(m / "f", "user.x")
        assert sorted(os.listxattr(m / "f")) == ["user.new", "user.y"]
        expect_errno(errno.EEXIST, os.setxattr, m / "f", "user.y", b"v", os.XATTR_CREATE)
        expect_errno(errno.ENODATA, os.setxattr, m / "f", "user.q", b"v", os.XATTR_REPLACE)
        os.setxattr(m / "d", "user.e", b"e")
        assert sorted(os.listdir(m / "d")) == ["c"]
    assert xattrs(ls.upper / "f") == {"user.new": b"value", "user.y": b"2"}
    assert xattrs(ls.upper / "d") == {"user.d": b"d", "user.e": b"e"}
    assert opaque_of(ls.upper / "d") is None
    assert xattrs(ls.lowers[0] / "f") == {"user.x": b"1", "user.y": b"2"}


def test_removexattr_of_absent_name_is_enodata_without_copy_up(layers):
    ls = layers(lowers=[{"f": File("F", xattrs={"user.x": "1"}), "d": {}}])
    with mount(ls) as m:
        expect_errno(errno.ENODATA, os.removexattr, m / "f", "user.nope")
        expect_errno(errno.ENODATA, os.removexattr, m / "d", "user.nope")
        expect_errno(errno.ENODATA, os.removexattr, m / "f", "trusted.overlay.nope")
    assert os.listdir(ls.upper) == []


def test_private_xattr_names_are_escaped(layers):
    ls = layers(lowers=[{"f": "F", "o": {}}], upper={"o": Opaque({"x": "x"})})
    with mount(ls) as m:
        os.setxattr(m / "f", "trusted.overlay.foo", b"bar")
        assert os.getxattr(m / "f", "trusted.overlay.foo") == b"bar"
        assert os.listxattr(m / "f") == ["trusted.overlay.foo"]
        # ovlfs's own markers are neither readable nor listed through the mount
        expect_errno(errno.ENODATA, os.getxattr, m / "o", "trusted.overlay.opaque")
        assert "trusted.overlay.opaque" not in os.listxattr(m / "o")
        os.setxattr(m / "f", "trusted.overlay.opaque", b"y")  # a caller's, escaped too
    up = xattrs(ls.upper / "f")
    assert up == {"trusted.overlay.overlay.foo": b"bar", "trusted.overlay.overlay.opaque": b"y"}
    with mount(ls) as m:
        assert sorted(os.listxattr(m / "f")) == ["trusted.overlay.foo", "trusted.overlay.opaque"]
        os.removexattr(m / "f", "trusted.overlay.foo")
        assert os.listxattr(m / "f") == ["trusted.overlay.opaque"]
    assert xattrs(ls.upper / "f") == {"trusted.overlay.overlay.opaque": b"y"}


# =========================================================================== inodes and links

def test_st_ino_unchanged_by_copy_up(layers):
    ls = layers(lowers=[{"f": "F", "g": "G", "d": {"x": "x"}, "l": Symlink("f")}])
    with mount(ls) as m:
        before = {n: os.lstat(m / n).st_ino for n in ("f", "g", "d", "l")}
        os.chmod(m / "f", 0o600)
        with open(m / "g", "ab") as fh:
            fh.write(b"+")
        with open(m / "d/new", "wb"):
            pass
        os.chown(m / "l", 1, 1, follow_symlinks=False)
        after = {n: os.lstat(m / n).st_ino for n in ("f", "g", "d", "l")}
        assert after == before
        assert {e.name: e.inode() for e in os.scandir(m) if e.name in before} == before
    assert sorted(os.listdir(ls.upper)) == ["d", "f", "g", "l"]


@pytest.mark.parametrize("index", ["on", "off"])
def test_lower_hard_links(layers, index):
    """With the index (the default) a lower hard link stays one file across copy-up; off,
    the name written splits from the other, as on the kernel without index=on."""
    ls = layers(lowers=[{"a": "data", "b": Hardlink("a")}])
    with mount(ls, ovlfs_opts=(f"index={index}",)) as m:
        assert os.stat(m / "a").st_ino == os.stat(m / "b").st_ino
        with open(m / "a", "r+b") as f:
            f.write(b"NEW!")
        if index == "on":
            assert (read(m / "a"), read(m / "b")) == (b"NEW!", b"NEW!")
            assert (os.stat(m / "a").st_nlink, os.stat(m / "b").st_nlink) == (2, 2)
            assert os.stat(m / "a").st_ino == os.stat(m / "b").st_ino
        else:
            assert (read(m / "a"), read(m / "b")) == (b"NEW!", b"data")
            assert (os.stat(m / "a").st_nlink, os.stat(m / "b").st_nlink) == (1, 2)
            assert os.stat(m / "a").st_ino != os.stat(m / "b").st_ino
    assert tree(ls.upper, upper=True) == {"a": "NEW!"}


def test_link_of_lower_file(layers):
    ls = layers(lowers=[{"a": "A", "d": {}}])
    with mount(ls) as m:
        os.link(m / "a", m / "d/n")
        sa, sn = os.stat(m / "a"), os.stat(m / "d/n")
        assert sa.st_ino == sn.st_ino and sa.st_nlink == sn.st_nlink == 2
        with open(m / "d/n", "ab") as f:
            f.write(b"+")
        assert read(m / "a") == b"A+"
    ua, un = os.lstat(ls.upper / "a"), os.lstat(ls.upper / "d/n")
    assert ua.st_ino == un.st_ino and ua.st_nlink == 2


# =========================================================================== file I/O

def test_write_append_fallocate_fsync_copy_file_range(layers):
    ls = layers(lowers=[{"a": "abc", "src": DATA}])
    with mount(ls) as m:
        fd = os.open(m / "a", os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"def")
        os.fsync(fd)
        os.fdatasync(fd)
        os.close(fd)
        fd = os.open(m / "n", os.O_CREAT | os.O_RDWR, 0o644)
        os.write(fd, b"xyz")
        fallocate(fd, 0, 0, 8192)
        assert os.fstat(fd).st_size == 8192
        os.posix_fallocate(fd, 8192, 4096)
        assert os.fstat(fd).st_size == 12288
        os.fsync(fd)
        os.close(fd)
        fi, fo = os.open(m / "src", os.O_RDONLY), os.open(m / "cp", os.O_CREAT | os.O_WRONLY)
        assert os.copy_file_range(fi, fo, 6, 2) == 6
        os.close(fi)
        os.close(fo)
        assert read(m / "cp") == b"234567"
        assert read(m / "a") == b"abcdef"
    assert read(ls.upper / "a") == b"abcdef"
    assert read(ls.upper / "n") == b"xyz" + b"\0" * 12285
    assert read(ls.upper / "cp") == b"234567"
    assert "src" not in os.listdir(ls.upper), "copy_file_range's source was copied up"


def test_o_direct(layers):
    ls = layers(lowers=[{}])
    buf = mmap.mmap(-1, 4096)  # page-aligned
    buf.write(b"D" * 4096)
    with mount(ls) as m:
        fd = os.open(m / "direct", os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
        try:
            assert os.write(fd, buf) == 4096
        finally:
            os.close(fd)
        assert read(m / "direct") == b"D" * 4096
    assert read(ls.upper / "direct") == b"D" * 4096


def test_fsync_and_access_on_lower_file_do_not_copy_up(layers):
    ls = layers(lowers=[{"a": "A"}])
    with mount(ls) as m:
        fd = os.open(m / "a", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        assert os.access(m / "a", os.W_OK)
    assert os.listdir(ls.upper) == []


def test_flock_and_posix_locks(layers):
    ls = layers(lowers=[{"a": "A"}])
    with mount(ls) as m:
        fd1, fd2 = os.open(m / "a", os.O_RDWR), os.open(m / "a", os.O_RDWR)
        try:
            fcntl.flock(fd1, fcntl.LOCK_EX | fcntl.LOCK_NB)
            expect_errno(errno.EWOULDBLOCK, fcntl.flock, fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd1, fcntl.LOCK_UN)
            fcntl.flock(fd2, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd2, fcntl.LOCK_UN)
            # POSIX locks belong to the process: another process must be refused
            fcntl.lockf(fd1, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            r = subprocess.run([sys.executable, "-c", f"""
import fcntl, os, sys
fd = os.open({str(m / 'a')!r}, os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
except OSError:
    pass
else:
    sys.exit('conflicting POSIX lock granted')
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 1)  # another byte is free
"""], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            fcntl.lockf(fd1, fcntl.LOCK_UN, 1, 0)
        finally:
            os.close(fd1)
            os.close(fd2)


def test_statfs_reports_the_upper_filesystem(layers, tmpfs):
    ls = layers(lowers=[{"a": "A"}])
    fs = tmpfs("upperfs", "size=8m")
    (fs / "upper").mkdir()
    (fs / "work").mkdir()
    ls.upper, ls.work = fs / "upper", fs / "work"
    with mount(ls) as m:
        with open(m / "n", "wb") as f:
            f.write(b"x" * MiB)
            f.flush()
            os.fsync(f.fileno())
        sm, su = os.statvfs(m), os.statvfs(fs)
        assert sm.f_blocks * sm.f_frsize == su.f_blocks * su.f_frsize == 8 * MiB
        assert abs(sm.f_bfree * sm.f_frsize - su.f_bfree * su.f_frsize) <= 64 * 1024
        assert sm.f_files == su.f_files and sm.f_namemax == 255


def test_read_only_without_upper(layers):
    ls = layers(lowers=[{"a": "A", "d": {}}, {"b": "B"}], rw=False)
    with mount(ls) as m:
        for fn, args in ((os.open, (m / "n", os.O_CREAT | os.O_WRONLY)),
                         (os.open, (m / "a", os.O_RDWR)), (os.chmod, (m / "a", 0o600)),
                         (os.unlink, (m / "a",)), (os.mkdir, (m / "e",)),
                         (os.rename, (m / "a", m / "c")),
                         (os.setxattr, (m / "a", "user.k", b"v")),
                         (os.truncate, (m / "a", 0))):
            expect_errno(errno.EROFS, fn, *args)
        assert read(m / "a") == b"A" and read(m / "b") == b"B"
    assert tree(ls.lowers[0]) == {"a": "A", "d": "D"}
