"""File handles: name_to_handle_at on ovlfs as on the kernel overlayfs with its defaults
(nfs_export=off).

The kernel overlayfs without nfs_export encodes only FIDs: identifiers for fanotify that no
one can open again, so name_to_handle_at fails with EOPNOTSUPP unless AT_HANDLE_FID asks for
one. ovlfs cannot decode a handle either (a FUSE handle names a node id, which dies with the
kernel's FORGET), so it negotiates FUSE_NO_EXPORT_SUPPORT and the kernel's FUSE client then
behaves the same way (fs/fuse/inode.c, process_init_reply).
"""
import ctypes
import errno
import os

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

AT_FDCWD = -100
AT_HANDLE_FID = 0x200
MAX_HANDLE_SZ = 128

_libc = ctypes.CDLL(None, use_errno=True)


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


def name_to_handle(path, flags=0):
    """(handle_type, bytes) of path, or the errno name_to_handle_at failed with."""
    fh = _FileHandle(handle_bytes=MAX_HANDLE_SZ)
    mount_id = ctypes.c_int()
    ret = _libc.name_to_handle_at(AT_FDCWD, os.fsencode(str(path)), ctypes.byref(fh),
                                  ctypes.byref(mount_id), flags)
    if ret != 0:
        return ctypes.get_errno()
    return fh.handle_type, bytes(fh.f_handle[:fh.handle_bytes])


LOWER = {"low": "below\n", "d": {"f": "in d\n"}}
UPPER = {"up": "above\n"}


def _handles(mnt):
    (mnt / "new").write_text("new\n")
    out = {}
    for rel in ("low", "up", "new", "d", "d/f", "."):
        out[rel] = (name_to_handle(mnt / rel), name_to_handle(mnt / rel, AT_HANDLE_FID))
    return out


def test_file_handles_refused_fids_given_as_kernel(tmp_path):
    results = {}
    for who in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / who, [LOWER], UPPER)
        mount = ls.kernel(extra_opts=wh.KERNEL_OPTS) if who == "kernel" else ls.ovlfs()
        with mount as m:
            results[who] = _handles(m)
    for rel, (kernel_plain, kernel_fid) in results["kernel"].items():
        ovlfs_plain, ovlfs_fid = results["ovlfs"][rel]
        assert kernel_plain == errno.EOPNOTSUPP, f"kernel {rel}: {kernel_plain}"
        assert ovlfs_plain == kernel_plain, (
            f"{rel}: name_to_handle_at gives {ovlfs_plain}, the kernel "
            f"{errno.errorcode[kernel_plain]}")
        # Both give a FID; its bytes are each filesystem's own.
        assert isinstance(kernel_fid, tuple), f"kernel {rel} FID: {kernel_fid}"
        assert isinstance(ovlfs_fid, tuple), f"{rel}: AT_HANDLE_FID gives {ovlfs_fid}"
    fids = [fid for _, fid in results["ovlfs"].values()]
    assert len(set(fids)) == len(fids), "two objects share a FID"
    with ls.ovlfs() as m:
        assert name_to_handle(m / "low", AT_HANDLE_FID) == name_to_handle(m / "low", AT_HANDLE_FID)

