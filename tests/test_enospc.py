"""Fault tests: the upper filesystem fills up. Upper and work live on a small tmpfs (4 MiB,
mounted by the test and unmounted at teardown); the lower layer is on the test disk.

Whatever fails midway must roll back: the caller gets ENOSPC, the lower file stays intact
and visible, no partial upper file is left, no whiteout is lost, nothing stray remains in
upper or in work/work, and the daemon keeps serving (small operations work afterwards)."""
import errno
import hashlib
import os
import stat

import pytest

from helpers import Whiteout, expect_errno, needs_fuse
from write_helpers import (BACKEND, is_whiteout, lstat_or_none, mount, read, renameat2, tree, utimensat,
                           work_leftovers)

pytestmark = needs_fuse
MiB = 1 << 20
BIG = 8 * MiB


def _small_upper(layers, tmpfs, lowers, upper=None, options="size=4m"):
    """A LayerSet whose upper and work directories are on a fresh small tmpfs."""
    ls = layers(lowers=lowers)
    fs = tmpfs("upperfs", options)
    (fs / "upper").mkdir()
    (fs / "work").mkdir()
    ls.upper, ls.work, ls.fs = fs / "upper", fs / "work", fs
    for rel, entry in (upper or {}).items():  # only whiteouts are needed here
        assert entry == "whiteout"
        os.mknod(ls.upper / rel, stat.S_IFCHR | 0o600, 0)
    return ls


def _used(ls):
    sv = os.statvfs(ls.fs)
    return (sv.f_blocks - sv.f_bfree) * sv.f_frsize


def _sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def big_lower():
    data = os.urandom(BIG)
    return data, {"big": data, "small": "s", "d": {"e": {"deep": data}}}


def _assert_rolled_back(ls, m, data, path="big", upper_before=None):
    assert os.stat(m / path).st_size == BIG, "the lower file is no longer visible as it was"
    assert _sha(read(m / path)) == _sha(data), "the visible file lost its data"
    assert _sha(read(ls.lowers[0] / path)) == _sha(data), "the lower file was modified"
    assert lstat_or_none(ls.upper / path) is None, "a partial upper file was left"
    if upper_before is not None:
        assert tree(ls.upper, upper=True) == upper_before, "stray entries in upper"
    assert not work_leftovers(ls.work), f"stray entries in work/work: {work_leftovers(ls.work)}"
    assert _used(ls) < 1 * MiB, f"space not given back: {_used(ls)} bytes used"


def _still_serving(ls, m):
    with open(m / "after", "wb") as f:
        f.write(b"ok")
    os.chmod(m / "small", 0o600)  # a small copy-up
    assert read(m / "after") == b"ok" and read(m / "small") == b"s"
    assert read(ls.upper / "after") == b"ok" and read(ls.upper / "small") == b"s"


COPY_UP_TRIGGERS = {
    "open_rdwr": lambda p: os.close(os.open(p, os.O_RDWR)),
    "open_wronly": lambda p: os.close(os.open(p, os.O_WRONLY)),
    "chmod": lambda p: os.chmod(p, 0o600),
    "chown": lambda p: os.chown(p, 1, 1),
    "utimens": lambda p: utimensat(p, "now", "now"),
    "truncate_shorter": lambda p: os.truncate(p, BIG - 1),
    "setxattr": lambda p: os.setxattr(p, "user.k", b"v"),
    "link": lambda p: os.link(p, p.parent / "newlink"),
    "rename": lambda p: renameat2(p, p.parent / "renamed"),
}


@pytest.mark.parametrize("trigger", sorted(COPY_UP_TRIGGERS))
def test_copy_up_of_a_file_larger_than_the_upper_fs(layers, tmpfs, big_lower, trigger):
    data, spec = big_lower
    ls = _small_upper(layers, tmpfs, [spec])
    with mount(ls) as m:
        expect_errno(errno.ENOSPC, COPY_UP_TRIGGERS[trigger], m / "big")
        for name in ("newlink", "renamed"):
            expect_errno(errno.ENOENT, os.lstat, m / name)
        st = os.stat(m / "big")
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_nlink) == (0o644, 0, 1)
        _assert_rolled_back(ls, m, data, upper_before={})
        _still_serving(ls, m)
    assert tree(ls.upper, upper=True) == {"after": "ok", "small": "s"}


def test_copy_up_failure_in_a_parent_chain(layers, tmpfs, big_lower):
    data, spec = big_lower
    ls = _small_upper(layers, tmpfs, [spec])
    with mount(ls) as m:
        expect_errno(errno.ENOSPC, os.open, m / "d/e/deep", os.O_RDWR)
        _assert_rolled_back(ls, m, data, path="d/e/deep")
        # the parents may have been copied up; they must be complete, merged directories
        up = tree(ls.upper, upper=True)
        assert set(up) <= {"d", "d/e"} and all(v == "D" for v in up.values()), up
        assert os.listdir(m / "d/e") == ["deep"]
        _still_serving(ls, m)


def test_open_fd_survives_a_failed_copy_up(layers, tmpfs, big_lower):
    data, spec = big_lower
    ls = _small_upper(layers, tmpfs, [spec])
    with mount(ls) as m:
        fd = os.open(m / "big", os.O_RDONLY)
        try:
            expect_errno(errno.ENOSPC, os.open, m / "big", os.O_RDWR)
            assert os.pread(fd, 4096, BIG - 4096) == data[-4096:]
        finally:
            os.close(fd)
        _assert_rolled_back(ls, m, data, upper_before={})


def test_create_and_write_until_full(layers, tmpfs, big_lower):
    data, spec = big_lower
    ls = _small_upper(layers, tmpfs, [spec])
    with mount(ls) as m:
        error, written = None, 0
        fd = os.open(m / "fill", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            chunk = b"f" * (256 * 1024)
            for _ in range(40):  # 10 MiB into a 4 MiB filesystem
                written += os.write(fd, chunk)
            os.fsync(fd)
        except OSError as e:
            error = e
        finally:
            try:
                os.close(fd)
            except OSError as e:
                error = error or e
        assert error is not None and error.errno == errno.ENOSPC, f"no ENOSPC reported: {error}"
        # what was written is there, and the mount and the upper agree on it
        size = os.stat(m / "fill").st_size
        assert 0 < size <= 4 * MiB and size == os.lstat(ls.upper / "fill").st_size
        assert read(m / "fill") == b"f" * size
        # a new file cannot get data, but its creation is consistent on both sides
        try:
            with open(m / "more", "wb") as f:
                f.write(b"m" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        more = lstat_or_none(m / "more")
        assert (more is None) == (lstat_or_none(ls.upper / "more") is None)
        assert not work_leftovers(ls.work)
        os.unlink(m / "fill")
        if more is not None:
            os.unlink(m / "more")
        assert _used(ls) < 1 * MiB
        _still_serving(ls, m)
        assert read(m / "big") == data
    assert tree(ls.upper, upper=True) == {"after": "ok", "small": "s"}


def test_copy_up_after_the_upper_fs_filled_up_and_was_freed(layers, tmpfs, big_lower):
    data, spec = big_lower
    spec = dict(spec, mid=b"m" * (3 * MiB))
    ls = _small_upper(layers, tmpfs, [spec])
    with mount(ls) as m:
        with open(m / "filler", "wb") as f:
            f.write(b"x" * (2 * MiB))
        expect_errno(errno.ENOSPC, os.chmod, m / "mid", 0o600)  # 3 MiB no longer fits
        assert read(m / "mid") == b"m" * (3 * MiB) and lstat_or_none(ls.upper / "mid") is None
        assert not work_leftovers(ls.work)
        os.unlink(m / "filler")
        os.chmod(m / "mid", 0o600)  # now it does
        assert read(ls.upper / "mid") == b"m" * (3 * MiB)
        assert stat.S_IMODE(os.lstat(ls.upper / "mid").st_mode) == 0o600


@pytest.mark.skipif(BACKEND == "kernel", reason="the kernel answers EXDEV")
def test_directory_rename_that_does_not_fit(layers, tmpfs):
    """The copying rename (redirect_dir=off) runs out of space: nothing changes."""
    a, b = os.urandom(3 * MiB), os.urandom(3 * MiB)
    ls = _small_upper(layers, tmpfs, [{"dir": {"a": a, "b": b}, "small": "s"}])
    with mount(ls, ovlfs_opts=("redirect_dir=off",)) as m:
        expect_errno(errno.ENOSPC, os.rename, m / "dir", m / "moved")
        expect_errno(errno.ENOENT, os.stat, m / "moved")
        assert sorted(os.listdir(m / "dir")) == ["a", "b"]
        assert (read(m / "dir/a"), read(m / "dir/b")) == (a, b)
        assert sorted(os.listdir(m)) == ["dir", "small"]
        assert lstat_or_none(ls.upper / "moved") is None and not is_whiteout(ls.upper / "dir")
        assert not work_leftovers(ls.work)
        # descendants copied so far may stay, complete; the source stays merged, not opaque
        for p, v in tree(ls.upper, upper=True).items():
            if v != "D":
                assert read(ls.upper / p) == {"dir/a": a, "dir/b": b}.get(p), f"upper {p}: {v}"
            assert p in ("dir", "dir/a", "dir/b"), f"stray upper entry {p}"
        _still_serving(ls, m)


@pytest.mark.skipif(BACKEND == "kernel", reason="KERNEL_OPTS has redirect_dir=off: EXDEV")
def test_directory_rename_with_redirect_fits(layers, tmpfs):
    """The default rename (redirect_dir=on) copies nothing below: it fits where the copy
    did not, and the directory shows all it held."""
    a, b = os.urandom(3 * MiB), os.urandom(3 * MiB)
    ls = _small_upper(layers, tmpfs, [{"dir": {"a": a, "b": b}, "small": "s"}])
    with mount(ls) as m:
        os.rename(m / "dir", m / "moved")
        assert (read(m / "moved/a"), read(m / "moved/b")) == (a, b)
        assert sorted(os.listdir(m)) == ["moved", "small"]
    assert is_whiteout(ls.upper / "dir") and os.listdir(ls.upper / "moved") == []


def test_out_of_inodes_keeps_whiteouts(layers, tmpfs):
    """Whiteouts and objects created over them need inodes: when there are none, the
    operation fails with ENOSPC and nothing hidden reappears, nothing visible disappears."""
    ls = _small_upper(layers, tmpfs, [{"gone": "hidden", "gdir": {"x": "x"}, "a": "A",
                                       "small": "s"}],
                      upper={"gone": "whiteout", "gdir": "whiteout"},
                      options="size=4m,nr_inodes=48")
    with mount(ls) as m:
        fillers = []
        for i in range(100):
            try:
                os.close(os.open(m / f"n{i}", os.O_CREAT | os.O_WRONLY, 0o644))
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
            fillers.append(f"n{i}")
        else:
            pytest.fail("never ran out of inodes")
        upper_before = tree(ls.upper, upper=True)
        expect_errno(errno.ENOSPC, os.open, m / "gone", os.O_CREAT | os.O_WRONLY, 0o644)
        expect_errno(errno.ENOSPC, os.mkdir, m / "gdir")
        expect_errno(errno.ENOSPC, os.symlink, "t", m / "gone")
        expect_errno(errno.ENOENT, os.stat, m / "gone")
        expect_errno(errno.ENOENT, os.stat, m / "gdir")
        assert is_whiteout(ls.upper / "gone") and is_whiteout(ls.upper / "gdir")
        expect_errno(errno.ENOSPC, os.unlink, m / "a")  # its whiteout needs an inode
        assert read(m / "a") == b"A"
        assert tree(ls.upper, upper=True) == upper_before
        assert not work_leftovers(ls.work)
        for name in fillers:
            os.unlink(m / name)
        os.mkdir(m / "gdir")
        assert os.listdir(m / "gdir") == [], "the hidden lower directory shows through"
        os.unlink(m / "a")
        _still_serving(ls, m)
    up = tree(ls.upper, upper=True)
    assert up == {"gone": "W", "gdir": "D:opaque", "a": "W", "after": "ok", "small": "s"}
