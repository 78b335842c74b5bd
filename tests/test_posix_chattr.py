"""chattr/lsattr (FS_IOC_GETFLAGS/SETFLAGS, FS_IOC_FSGETXATTR) as on the kernel overlayfs (the
chattr item of the POSIX fidelity issue).

The kernel overlayfs reads the flags from the object where it lives, copies up before a
change, and keeps immutable and append-only off the upper inode, in overlay.protattr ("a",
"i"), enforcing them itself (fs/overlayfs/inode.c ovl_fileattr_set, util.c
ovl_set_protattr). The same steps run on a kernel overlayfs and on ovlfs over identical
layers (on ext4, which keeps these flags); each step's result, and the upper layer's flags
and protattr afterwards, must match.
"""
import errno
import fcntl
import os
import struct
import subprocess

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

GETFLAGS, SETFLAGS, FSGETXATTR = 0x80086601, 0x40086602, 0x801C581F
APPEND, IMMUTABLE, NODUMP, NOATIME = 0x20, 0x10, 0x40, 0x80
XFLAG_IMMUTABLE = 0x8

LOWER = {
    "f": helpers.File("lower data\n"),
    "d": helpers.Dir({"child": helpers.File("c\n")}),
    "fi": helpers.File("immutable\n"),
    "fa": helpers.File("append\n"),
    "di": helpers.Dir({"child": helpers.File("c\n")}),
    "li": helpers.File("immutable below\n"),  # +i on the lower layer itself
    "sa": helpers.File("noatime below\n"),    # +A on the lower layer: copied up
    "fo": helpers.File("opened before\n"),
}
UPPER = {"u": helpers.File("upper data\n")}
LOWER_FLAGS = {"li": IMMUTABLE, "sa": NOATIME}


def _flags(path):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return struct.unpack("I", fcntl.ioctl(fd, GETFLAGS, b"\0" * 4))[0]
    finally:
        os.close(fd)


def _setflags(path, flags):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, SETFLAGS, struct.pack("I", flags))
    finally:
        os.close(fd)


def _chattr(path, on=0, off=0):
    return helpers.errno_result(lambda: _setflags(path, (_flags(path) | on) & ~off))


def _xflags(path):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return struct.unpack("IIIII8x", fcntl.ioctl(fd, FSGETXATTR, b"\0" * 28))[0]
    finally:
        os.close(fd)


def _ls(path, xflags=False, mask=~0):
    """lsattr through the mount: the flags in hex, or the errno name."""
    return helpers.errno_result(lambda: hex((_xflags(path) if xflags else _flags(path)) & mask))


def _write(path, flags, data=b"w"):
    def run():
        fd = os.open(path, flags)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return helpers.errno_result(run)


def _protected_ops(m, name):
    """What may not be done to an immutable (or append-only) object, each tried."""
    p = m / name
    return {
        "write": _write(p, os.O_WRONLY),
        "append": _write(p, os.O_WRONLY | os.O_APPEND),
        "o_trunc": _write(p, os.O_WRONLY | os.O_TRUNC),
        "truncate": helpers.errno_result(lambda: os.truncate(p, 1)),
        "chmod": helpers.errno_result(lambda: os.chmod(p, 0o600)),
        "utime": helpers.errno_result(lambda: os.utime(p, (1, 1))),
        "setxattr": helpers.errno_result(lambda: os.setxattr(p, "user.x", b"1")),
        "link": helpers.errno_result(lambda: os.link(p, m / (name + ".link"))),
        "rename": helpers.errno_result(lambda: os.rename(p, m / (name + ".moved"))),
        "unlink": helpers.errno_result(lambda: os.unlink(p)),
    }


def _upper_state(upper):
    out = {}
    for name in sorted(os.listdir(upper)):
        p = upper / name
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            continue
        try:
            prot = os.getxattr(p, "trusted.overlay.protattr").decode()
        except OSError as e:
            prot = errno.errorcode[e.errno]
        out[name] = {"flags": hex(_flags(p) & ~0x80000), "protattr": prot}
    return out


def _steps(m, upper, lowers):
    r = {}
    # lsattr of lower and upper objects, in both forms
    for n in ("f", "d", "u", "li", "sa"):
        r[f"lsattr {n}"] = _ls(m / n)
        r[f"xflags {n}"] = _ls(m / n, True)
    # flags the upper filesystem keeps: set on the copied-up object, lower untouched
    r["chattr +d f"] = _chattr(m / "f", on=NODUMP)
    r["chattr +A d"] = _chattr(m / "d", on=NOATIME)
    r["chattr +d u"] = _chattr(m / "u", on=NODUMP)
    for n in ("f", "d", "u"):
        r[f"after {n}"] = _ls(m / n)
        r[f"xflags after {n}"] = _ls(m / n, True)
    r["lower f"] = _ls(lowers[0] / "f")
    r["lower d"] = _ls(lowers[0] / "d")
    # immutable below: nothing may change it (and nothing is copied up trying)
    r["li"] = _protected_ops(m, "li")
    r["li copied up"] = (upper / "li").exists()
    # a lower file made immutable through the mount
    # sync/noatime go with a copy-up
    r["sa append"] = _write(m / "sa", os.O_WRONLY | os.O_APPEND)
    r["chattr +i fi"] = _chattr(m / "fi", on=IMMUTABLE)
    r["lsattr fi"] = _ls(m / "fi")
    r["xflags fi"] = _ls(m / "fi", True, XFLAG_IMMUTABLE)
    r["fi"] = _protected_ops(m, "fi")
    # append-only: appends only
    # a descriptor opened for writing before +i keeps writing, and ftruncate goes through
    fd = os.open(m / "fo", os.O_WRONLY | os.O_APPEND)
    try:
        r["chattr +i fo"] = _chattr(m / "fo", on=IMMUTABLE)
        r["fo old fd"] = [helpers.errno_result(lambda: os.write(fd, b"x")),
                          helpers.errno_result(lambda: os.ftruncate(fd, 3))]
    finally:
        os.close(fd)
    r["chattr -i fo"] = _chattr(m / "fo", off=IMMUTABLE)
    r["chattr +a fa"] = _chattr(m / "fa", on=APPEND)
    r["fa"] = _protected_ops(m, "fa")
    r["fa data"] = helpers.errno_result(lambda: (m / "fa").read_bytes().decode())
    # an immutable directory: no name comes or goes
    r["chattr +i di"] = _chattr(m / "di", on=IMMUTABLE)
    r["di create"] = _write(m / "di" / "new", os.O_WRONLY | os.O_CREAT)
    r["di mkdir"] = helpers.errno_result(lambda: os.mkdir(m / "di" / "sub"))
    r["di unlink"] = helpers.errno_result(lambda: os.unlink(m / "di" / "child"))
    r["di rename out"] = helpers.errno_result(lambda: os.rename(m / "di" / "child", m / "x"))
    r["di child write"] = _write(m / "di" / "child", os.O_WRONLY | os.O_APPEND)
    r["upper while protected"] = _upper_state(upper)
    # cleared: everything allowed again, protattr gone
    r["chattr -i fi"] = _chattr(m / "fi", off=IMMUTABLE)
    r["chattr -a fa"] = _chattr(m / "fa", off=APPEND)
    r["chattr -i di"] = _chattr(m / "di", off=IMMUTABLE)
    r["fi write"] = _write(m / "fi", os.O_WRONLY | os.O_TRUNC, b"rewritten\n")
    r["fa write"] = _write(m / "fa", os.O_WRONLY | os.O_TRUNC, b"rewritten\n")
    r["di create again"] = _write(m / "di" / "new", os.O_WRONLY | os.O_CREAT)
    r["upper after clearing"] = _upper_state(upper)
    r["fi unlink"] = helpers.errno_result(lambda: os.unlink(m / "fi"))
    r["fa unlink"] = helpers.errno_result(lambda: os.unlink(m / "fa"))
    return r


def _clear_flags(base):
    """Layers with immutable or append-only objects cannot be removed."""
    subprocess.run(["chattr", "-R", "-i", "-a", str(base)], capture_output=True)


@pytest.fixture(scope="module")
def results():
    with wh.public_dir() as pub:
        sets = [helpers.build_layers(pub / side, [LOWER], UPPER) for side in ("k", "o")]
        try:
            for ls in sets:
                for name, fl in LOWER_FLAGS.items():
                    _setflags(ls.lowers[0] / name, _flags(ls.lowers[0] / name) | fl)
            out = {}
            with sets[0].kernel(mnt=pub / "mk", extra_opts=wh.KERNEL_OPTS) as km:
                out["kernel"] = _steps(km, sets[0].upper, sets[0].lowers)
            with sets[1].ovlfs(mnt=pub / "mo") as om:
                out["ovlfs"] = _steps(om, sets[1].upper, sets[1].lowers)
            yield out
        finally:
            for ls in sets:
                _clear_flags(ls.base)


KEYS = ["lsattr f", "xflags f", "lsattr d", "lsattr u", "lsattr li", "xflags li", "lsattr sa",
        "chattr +d f", "chattr +A d", "chattr +d u", "after f", "after d", "after u",
        "xflags after f", "lower f", "lower d", "li", "li copied up", "sa append",
        "chattr +i fi",
        "lsattr fi", "xflags fi", "fi", "chattr +i fo", "fo old fd", "chattr -i fo", "chattr +a fa", "fa", "fa data", "chattr +i di",
        "di create", "di mkdir", "di unlink", "di rename out", "di child write",
        "upper while protected", "chattr -i fi", "chattr -a fa", "chattr -i di", "fi write",
        "fa write", "di create again", "upper after clearing", "fi unlink", "fa unlink"]


@pytest.mark.parametrize("key", KEYS)
def test_as_on_kernel(results, key):
    assert results["ovlfs"][key] == results["kernel"][key], key


def test_kernel_reference(results):
    """Guards the setup: the kernel really set, kept and enforced the flags."""
    k = results["kernel"]
    assert k["chattr +i fi"] == "ok" and int(k["lsattr fi"], 16) & IMMUTABLE
    assert k["fi"]["write"] == "EPERM" and k["fi"]["unlink"] == "EPERM"
    assert k["fa"]["append"] == "ok" and k["fa"]["write"] == "EPERM"
    assert k["upper while protected"]["fi"]["protattr"] == "i"
    assert k["upper while protected"]["fa"]["protattr"] == "a"
    assert int(k["after f"], 16) & NODUMP and not int(k["lower f"], 16) & NODUMP
    assert k["fi unlink"] == "ok"
    assert int(k["upper while protected"]["sa"]["flags"], 16) & NOATIME
