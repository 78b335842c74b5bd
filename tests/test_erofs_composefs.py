"""A composefs-style stack on a real EROFS image (issue #16): the metadata layer of
tests/test_metacopy.py (sparse stubs with trusted.overlay.metacopy and an absolute
trusted.overlay.redirect to a content-addressed object) is packed with Debian's mkfs.erofs
and loop-mounted by the kernel, over a data-only layer of objects, with a writable upper.
ovlfs must show what the kernel overlayfs shows on the same layers, write the same upper
layer, and read back what it wrote after a remount, as the kernel does. Skipped where
mkfs.erofs (erofs-utils) or the kernel's erofs is missing.
"""
import contextlib
import errno
import mmap
import os
import shutil
import subprocess

import pytest

import helpers
from test_metacopy import OBJECTS, _build_composefs

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

# What composefs asks of the kernel; ovlfs gets the same options, so both copy up the same.
STACK_OPTS = ("metacopy=on", "redirect_dir=on", "index=off")
NEW = "a file created over the image\n"
APPENDED = "appended\n"


def _why_no_erofs():
    """Why the stack cannot be built here, or None. erofs may be a module not yet loaded."""
    if shutil.which("mkfs.erofs") is None:
        return "mkfs.erofs not found (Debian package erofs-utils)"
    with open("/proc/filesystems") as f:
        if not any(line.split()[-1] == "erofs" for line in f if line.strip()):
            subprocess.run(["modprobe", "erofs"], capture_output=True)
    with open("/proc/filesystems") as f:
        if not any(line.split()[-1] == "erofs" for line in f if line.strip()):
            return "the kernel has no erofs"
    return None


@contextlib.contextmanager
def _erofs_mounted(image, mnt):
    """Attaches image to a loop device read-only and mounts it; always unmounts and detaches
    what it made, even when the mount fails."""
    r = subprocess.run(["losetup", "--find", "--show", "--read-only", str(image)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"no loop device: {r.stderr.strip()}")
    loop = r.stdout.strip()
    try:
        mnt.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "erofs", "-o", "ro", loop, str(mnt)], check=True,
                       capture_output=True)
        try:
            yield mnt
        finally:
            helpers.unmount(mnt, fuse=False)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)


@pytest.fixture
def erofs_stack(tmp_path):
    """(metadata layer on a mounted EROFS image, data-only layer, {path: object name})."""
    why = _why_no_erofs()
    if why:
        pytest.skip(why)
    src, data, files = _build_composefs(tmp_path / "src")
    image = tmp_path / "meta.erofs"
    # xattrs are kept by default (-x2); trusted.* included, as checked below.
    subprocess.run(["mkfs.erofs", "--quiet", str(image), str(src)], check=True)
    with _erofs_mounted(image, tmp_path / "meta") as meta:
        assert helpers.mount_fstype(meta) == "erofs"
        for rel in files:  # the stubs kept their marks through mkfs.erofs
            assert os.getxattr(meta / rel, "trusted.overlay.metacopy") == b""
            assert os.getxattr(meta / rel, "trusted.overlay.redirect").startswith(b"/")
        yield meta, data, files


def _fresh_upper(base):
    upper, work = base / "upper", base / "work"
    upper.mkdir(parents=True)
    work.mkdir()
    os.utime(upper, (1600000000, 1600000000))  # the merged root's times: the same for both
    return upper, work


@contextlib.contextmanager
def _kernel(meta, data, upper, work, mnt):
    """The kernel overlayfs on the stack (helpers.mount_kernel has no `::`); always unmounted."""
    mnt.mkdir(parents=True, exist_ok=True)
    opts = [f"lowerdir={meta}::{data}", f"upperdir={upper}", f"workdir={work}", *STACK_OPTS]
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", ",".join(opts), str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        helpers.unmount(mnt, fuse=False)


def _mount(who, meta, data, upper, work, mnt, ovlfs_opts=STACK_OPTS):
    if who == "kernel":
        return _kernel(meta, data, upper, work, mnt)
    return helpers.mount_ovlfs([f"{meta}::{data}"], upper, work, extra_opts=ovlfs_opts, mnt=mnt)


def _writes(m):
    with open(m / "etc/hello", "a") as f:  # the object's data copied up, then appended to
        f.write(APPENDED)
    os.chmod(m / "usr/bin/big", 0o700)  # metadata only: a stub in the upper layer
    (m / "etc/new").write_text(NEW)
    os.unlink(m / "etc/same2")  # a whiteout over the image's stub
    os.truncate(m / "usr/bin/same1", 6)  # the object's data copied up, then cut
    os.mkdir(m / "usr/bin/sub")
    os.rename(m / "usr/bin", m / "usr/sbin")  # a directory of stubs renamed: a redirect


def _upper_marks(upper):
    """Per changed name: (metacopy mark or errno name, redirect or errno name, size)."""
    out = {}
    for rel in ("etc/hello", "usr/sbin", "usr/sbin/big", "usr/sbin/same1", "etc/new"):
        marks = []
        for name in ("trusted.overlay.metacopy", "trusted.overlay.redirect"):
            try:
                marks.append(os.getxattr(upper / rel, name))
            except OSError as e:
                marks.append(errno.errorcode[e.errno])
        out[rel] = (*marks, os.lstat(upper / rel).st_size)
    return out


def _timeless(snap):
    return {p: {k: v for k, v in rec.items() if k != "mtime_ns"} for p, rec in snap.items()}


# Data-only layers imply metacopy for their stubs: ovlfs's defaults read the stack too.
@pytest.mark.parametrize("ovlfs_opts", [STACK_OPTS, ()], ids=["metacopy", "defaults"])
def test_erofs_stack_reads_as_kernel(erofs_stack, tmp_path, ovlfs_opts):
    meta, data, files = erofs_stack
    seen = {}
    for who in ("kernel", "ovlfs"):
        upper, work = _fresh_upper(tmp_path / who)
        with _mount(who, meta, data, upper, work, tmp_path / f"m-{who}", ovlfs_opts) as m:
            for rel, obj in files.items():
                assert (m / rel).read_text() == OBJECTS[obj]
            with open(m / "usr/bin/big", "rb") as f, \
                    mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
                assert mm[:] == OBJECTS["big"].encode()
            assert helpers.errno_result(lambda: os.lstat(m / "not-a-name")) == "ENOENT"
            seen[who] = (helpers.snapshot(m, dir_nlink=False),
                         {rel: os.lstat(m / rel).st_blocks for rel in files})
        assert os.listdir(upper) == []  # reading copies nothing up
    helpers.assert_same_tree(seen["kernel"][0], seen["ovlfs"][0])
    assert seen["ovlfs"][1] == seen["kernel"][1]


def test_erofs_stack_writes_as_kernel(erofs_stack, tmp_path):
    """The same writes through the kernel and through ovlfs leave the same visible tree and
    the same upper layer; each reads the other's upper layer back."""
    meta, data, files = erofs_stack
    objects_before = helpers.snapshot(data)
    seen = {}
    for who in ("kernel", "ovlfs"):
        upper, work = _fresh_upper(tmp_path / who)
        with _mount(who, meta, data, upper, work, tmp_path / f"m-{who}") as m:
            _writes(m)
            assert (m / "etc/hello").read_text() == OBJECTS["hello"] + APPENDED
            assert (m / "usr/sbin/big").read_text() == OBJECTS["big"]
            assert os.stat(m / "usr/sbin/big").st_mode & 0o777 == 0o700
            assert (m / "usr/sbin/same1").read_text() == OBJECTS["same"][:6]
            assert sorted(os.listdir(m / "etc")) == ["hello", "inline", "link", "new"]
            assert (m / "etc/new").read_text() == NEW
            shown = helpers.snapshot(m, dir_nlink=False)
        seen[who] = (shown, helpers.snapshot_upper(upper), _upper_marks(upper), upper, work)
    assert helpers.snapshot(data) == objects_before  # the objects are never written
    # Written a moment apart: times are compared only between a writer and its remount.
    helpers.assert_same_tree(*(_timeless(seen[who][0]) for who in ("kernel", "ovlfs")))
    helpers.assert_same_tree(seen["kernel"][1], seen["ovlfs"][1],
                             names=("kernel's upper", "ovlfs's upper"))
    assert seen["ovlfs"][2] == seen["kernel"][2]
    marks = seen["ovlfs"][2]
    assert marks["etc/hello"][0] == "ENODATA"  # the data copied up whole
    assert marks["etc/hello"][2] == len((OBJECTS["hello"] + APPENDED).encode())
    assert marks["usr/sbin/big"][0] == b""  # a stub: the data stays in the object store
    # A remount, by either, of either's upper layer shows the same tree.
    for writer in ("kernel", "ovlfs"):
        shown, _, _, upper, work = seen[writer]
        for reader in ("kernel", "ovlfs"):
            mnt = tmp_path / f"again-{writer}-by-{reader}"
            with _mount(reader, meta, data, upper, work, mnt) as m:
                helpers.assert_same_tree(shown, helpers.snapshot(m, dir_nlink=False),
                                         names=(f"{writer} wrote", f"{reader} read back"))
