"""Setuid and setgid bits cleared by writes of unprivileged users, on every write path, as on
the kernel overlayfs (the security item of the POSIX fidelity issue).

The rule the kernel applies: a caller without CAP_FSETID who changes a file's data (write,
O_DIRECT write, fallocate of any kind, truncate, open with O_TRUNC, copy_file_range into it)
clears S_ISUID, and S_ISGID when the group may execute; setting an access ACL clears S_ISGID
when the caller is not in the file's group. Without it a writable setuid binary could be
rewritten by anyone. ovlfs writes layer files as root (who keeps the bits), so it must apply
the rule itself wherever the kernel leaves it to the filesystem.

Each path gets its own file, once on a lower layer (the write copies it up) and once on the
upper layer, on a kernel overlayfs and on an ovlfs mount built from identical layers; the
mode seen afterwards must be the same, and the kernel's must have lost the bits.
"""
import json
import os
import stat

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

OWNER, WRITER = 1000, 1002
DATA = "x" * 16384
# name -> what the child does to the file (see CHILD)
PATHS = ["write", "odirect", "fallocate", "punch_hole", "zero_range", "truncate",
         "ftruncate", "o_trunc", "copy_file_range"]


def _setid_file():
    return helpers.File(DATA, uid=OWNER, gid=OWNER, mode=0o6777)


LOWER = {f"l_{p}": _setid_file() for p in PATHS}
LOWER["source"] = helpers.File("from another file\n", mode=0o644)
LOWER["l_acl"] = helpers.File(DATA, uid=OWNER, gid=WRITER, mode=0o2775)
UPPER = {f"u_{p}": _setid_file() for p in PATHS}
UPPER["u_acl"] = helpers.File(DATA, uid=OWNER, gid=WRITER, mode=0o2775)
# A file with two names (ovlfs opens those for direct I/O): a plain write of one name.
UPPER["u_linked_write"] = _setid_file()
UPPER["u_linked_other"] = helpers.Hardlink("u_linked_write")

CHILD = r"""
import ctypes, errno, json, mmap, os, sys
path, op = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
def falloc(fd, mode, off, length):
    f = libc.fallocate
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if f(fd, mode, off, length) < 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
def run():
    if op == "setacl":
        acl = (b"\x02\x00\x00\x00" + b"\x01\x00\x07\x00\xff\xff\xff\xff" +
               b"\x04\x00\x05\x00\xff\xff\xff\xff" + b"\x20\x00\x05\x00\xff\xff\xff\xff")
        os.setxattr(path, "system.posix_acl_access", acl); return 0
    if op == "truncate":
        os.truncate(path, 100); return 0
    if op == "o_trunc":
        os.close(os.open(path, os.O_WRONLY | os.O_TRUNC)); return 0
    flags = os.O_WRONLY | (os.O_DIRECT if op == "odirect" else 0)
    fd = os.open(path, flags)
    try:
        if op == "write":
            return os.pwrite(fd, b"w", 0)
        if op == "odirect":
            buf = mmap.mmap(-1, 4096); buf.write(b"d" * 4096)
            return os.pwritev(fd, [buf], 0)
        if op == "fallocate":
            falloc(fd, 0, 0, 65536); return 0
        if op == "punch_hole":
            falloc(fd, 0x01 | 0x02, 0, 4096); return 0
        if op == "zero_range":
            falloc(fd, 0x10, 0, 4096); return 0
        if op == "ftruncate":
            os.ftruncate(fd, 100); return 0
        if op == "copy_file_range":
            src = os.open(os.path.join(os.path.dirname(path), "source"), os.O_RDONLY)
            try:
                return os.copy_file_range(src, fd, 10, 0, 0)
            finally:
                os.close(src)
    finally:
        os.close(fd)
    raise ValueError(op)
try:
    out = run()
except OSError as e:
    out = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"""

CASES = [(f"{side}_{p}", p) for side in ("l", "u") for p in PATHS] + \
        [("l_acl", "setacl"), ("u_acl", "setacl"), ("u_linked_write", "write")]


def _run(mnt, name, op):
    # The ACL is set by the owner, outside the file's group; the writes come from a user who
    # neither owns the file nor is in its group.
    uid = OWNER if op == "setacl" else WRITER
    r = wh.as_user(uid, uid, "/usr/bin/python3", "-c", CHILD, str(mnt / name), op)
    assert r.returncode == 0, f"{name}: child failed: {r.stderr}"
    st = os.lstat(mnt / name)
    return {"result": json.loads(r.stdout), "mode": oct(st.st_mode)}


@pytest.fixture(scope="module", params=[(), ("passthrough=0",)], ids=["default", "no-passthrough"])
def results(request):
    with wh.public_dir() as pub:
        k = helpers.build_layers(pub / "k", [LOWER], UPPER)
        o = helpers.build_layers(pub / "o", [LOWER], UPPER)
        out = {}
        with k.kernel(mnt=pub / "mk", extra_opts=wh.KERNEL_OPTS) as km, \
                o.ovlfs(mnt=pub / "mo", extra_opts=request.param) as om:
            for name, op in CASES:
                out[name] = (_run(km, name, op), _run(om, name, op))
        yield out


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_bits_cleared_as_on_kernel(results, name):
    kernel, ovlfs = results[name]
    assert ovlfs == kernel, f"{name}: kernel {kernel} ovlfs {ovlfs}"


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_kernel_reference_clears(results, name):
    """Guards the setup: the reference really succeeded and cleared the bits."""
    kernel = results[name][0]
    assert kernel["result"] not in ("EACCES", "EPERM", "EINVAL", "EOPNOTSUPP"), kernel
    mode = int(kernel["mode"], 8)
    assert not mode & stat.S_ISGID, kernel
    if not name.endswith("acl"):
        assert not mode & stat.S_ISUID, kernel
