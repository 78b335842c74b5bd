"""statx(2) creation time (btime) through the mount, as on the kernel overlayfs.

The kernel overlayfs answers statx from the real (upper or lower) object, btime included.
A FUSE mount reports btime only if the daemon answers the STATX request (protocol 7.39,
Linux 6.6), which libfuse 3.14 does not know; ovlfs answers it on the raw message
(src/fuse/rawops.c). Every check compares the btime seen through the mount with the one of
the layer object the kernel overlayfs shows for that name, on identical layers: a lower
file, an upper file, a lower and a merged directory, the root, an open file (fstatx: the
request carries the file handle), a file created through the mount, and files copied up
(chmod, append: afterwards the btime is the new upper file's).
"""
import ctypes
import os
import shutil
import time

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

STATX_BTIME = 0x800
STATX_BASIC_STATS = 0x7FF
AT_EMPTY_PATH = 0x1000

_libc = ctypes.CDLL(None, use_errno=True)


class _Ts(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_int64), ("nsec", ctypes.c_uint32), ("pad", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    _fields_ = [("mask", ctypes.c_uint32), ("blksize", ctypes.c_uint32),
                ("attributes", ctypes.c_uint64), ("nlink", ctypes.c_uint32),
                ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32), ("mode", ctypes.c_uint16),
                ("pad0", ctypes.c_uint16), ("ino", ctypes.c_uint64), ("size", ctypes.c_uint64),
                ("blocks", ctypes.c_uint64), ("attributes_mask", ctypes.c_uint64),
                ("atime", _Ts), ("btime", _Ts), ("ctime", _Ts), ("mtime", _Ts),
                ("rdev_major", ctypes.c_uint32), ("rdev_minor", ctypes.c_uint32),
                ("dev_major", ctypes.c_uint32), ("dev_minor", ctypes.c_uint32),
                ("spare", ctypes.c_uint64 * 14)]


def btime(path=None, fd=None):
    """(sec, nsec) of statx(STATX_BTIME) of path, or of fd; None if not reported."""
    sx = _Statx()
    if fd is not None:
        r = _libc.statx(fd, b"", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME,
                        ctypes.byref(sx))
    else:
        r = _libc.statx(wh.AT_FDCWD, os.fsencode(path), wh.AT_SYMLINK_NOFOLLOW,
                        STATX_BASIC_STATS | STATX_BTIME, ctypes.byref(sx))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return (sx.btime.sec, sx.btime.nsec) if sx.mask & STATX_BTIME else None


LOWER = {"lfile": "lower\n", "ldir": {"inner": "x\n"}, "merged": {"low": "l\n"},
         "chmodme": "c\n", "appendme": "a\n"}
UPPER = {"ufile": "upper\n", "merged": {"up": "u\n"}}
# name in the mount -> the layer that holds the object the kernel overlayfs shows
WHERE = {"lfile": "lower0", "ldir": "lower0", "ldir/inner": "lower0", "merged": "upper",
         "merged/low": "lower0", "merged/up": "upper", "ufile": "upper", "": "upper"}


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    base = tmp_path_factory.mktemp("statx")
    ls = helpers.build_layers(base / "a", [LOWER], UPPER)
    layer_btime = {name: btime(ls.base / where / name) for name, where in WHERE.items()}
    if any(v is None for v in layer_btime.values()):
        pytest.skip(f"the filesystem under {base} keeps no creation times")
    return base, ls, layer_btime


def _read_only_results(mnt):
    out = {name: btime(mnt / name) for name in WHERE}
    with open(mnt / "lfile") as f:
        out["fd:lfile"] = btime(fd=f.fileno())
    with open(mnt / "ufile") as f:
        out["fd:ufile"] = btime(fd=f.fileno())
    return out


@pytest.mark.parametrize("backend", ["kernel", "ovlfs"])
def test_btime_is_the_layer_objects(layers, backend):
    _, ls, layer_btime = layers
    mount = ls.kernel(extra_opts=wh.KERNEL_OPTS) if backend == "kernel" else ls.ovlfs()
    with mount as mnt:
        got = _read_only_results(mnt)
    want = dict(layer_btime)
    want["fd:lfile"], want["fd:ufile"] = layer_btime["lfile"], layer_btime["ufile"]
    assert got == want


@pytest.mark.parametrize("backend", ["kernel", "ovlfs"])
def test_btime_after_create_and_copy_up(layers, backend):
    base, _, _ = layers
    work = base / backend
    shutil.rmtree(work, ignore_errors=True)
    ls = helpers.build_layers(work, [LOWER], UPPER)
    mount = ls.kernel(extra_opts=wh.KERNEL_OPTS) if backend == "kernel" else ls.ovlfs()
    with mount as mnt:
        before = {n: btime(mnt / n) for n in ("chmodme", "appendme")}
        time.sleep(0.05)  # copy-up makes new upper files: a later btime than the lower's
        (mnt / "created").write_text("new\n")
        os.chmod(mnt / "chmodme", 0o600)
        with open(mnt / "appendme", "a") as f:
            f.write("more\n")
            during = btime(fd=f.fileno())
        got = {n: btime(mnt / n) for n in ("created", "chmodme", "appendme")}
    upper = {n: btime(ls.upper / n) for n in ("created", "chmodme", "appendme")}
    assert got == upper
    assert during == upper["appendme"]
    for n in ("chmodme", "appendme"):
        assert before[n] == btime(ls.lowers[0] / n) != upper[n]
