"""The umask and default ACLs: ovlfs against the kernel overlayfs, side by side.

POSIX.1e: a new object in a directory with a default ACL gets its mode from that ACL and
the mode asked for, the umask being ignored; elsewhere the umask applies. The kernel sends
FUSE the umask apart (FUSE_DONT_MASK) and ovlfs decides on the upper parent, after copying
a lower parent up with its ACLs. An unprivileged child with umask 022 and 077 creates
files, directories, fifos and symlinks (root, with umask 027, devices) in plain directories
and in directories with a default ACL, lower ones (copied up on the way) and upper ones, in a setgid one, and over
whiteouts (objects built in the work directory); root records mode, owner and the ACL
xattrs of each, and both mounts must agree.
"""
import json
import os
import stat
import struct

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

USER, GROUP, NAMED = 1000, 1001, 1002
UMASKS = (0o022, 0o077)
ROOT_UMASK = 0o027


def _acl(*entries):
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in entries)


USER_OBJ, NAMED_USER, GROUP_OBJ, NAMED_GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
NO_ID = 0xFFFFFFFF
# A plain default: group may write, others read.
DEF_GROUP_RWX = _acl((USER_OBJ, 7, NO_ID), (GROUP_OBJ, 7, NO_ID), (OTHER, 5, NO_ID))
# Read-only for owner and group, nothing for others.
DEF_READ_ONLY = _acl((USER_OBJ, 4, NO_ID), (GROUP_OBJ, 4, NO_ID), (OTHER, 0, NO_ID))
# A named group with rwx, and a mask.
DEF_NAMED = _acl((USER_OBJ, 7, NO_ID), (GROUP_OBJ, 5, NO_ID), (NAMED_GROUP, 7, NAMED),
                 (MASK, 7, NO_ID), (OTHER, 5, NO_ID))

DIRS = {
    "plain": None,
    "acl_rwx": DEF_GROUP_RWX,
    "acl_ro": DEF_READ_ONLY,
    "acl_named": DEF_NAMED,
}


def _dirs(where):
    """The test directories of one layer (names prefixed by where: lower or upper)."""
    out = {}
    for name, acl in DIRS.items():
        x = {"system.posix_acl_default": acl} if acl else {}
        # old*: names to remove and make again, over a whiteout (lower) or not (upper)
        out[f"{where}_{name}"] = helpers.Dir(mode=0o777, xattrs=x, children={
            "oldf": "old\n", "oldd": helpers.Dir(mode=0o755)})
    out[f"{where}_sgid"] = helpers.Dir(mode=0o2777, gid=GROUP,
                                       xattrs={"system.posix_acl_default": DEF_GROUP_RWX})
    out[f"{where}_sgid_plain"] = helpers.Dir(mode=0o2777, gid=GROUP)
    return out


LOWER = _dirs("lower")
UPPER = _dirs("upper")

# The child: with the given umask, makes each (kind, path, mode); prints errors by path.
CHILD = r"""
import errno, json, os, sys
root, umask, ops = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
os.umask(umask)
out = {}
for kind, path, mode in ops:
    p = os.path.join(root, path)
    try:
        if kind == "file":
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        elif kind == "dir":
            os.mkdir(p, mode)
        elif kind == "fifo":
            os.mkfifo(p, mode)
        elif kind == "chr":
            os.mknod(p, 0o20000 | mode, os.makedev(1, 3))
        elif kind == "symlink":
            os.symlink("target", p)
        elif kind == "unlink":
            os.unlink(p)
        elif kind == "rmdir":
            os.rmdir(p)
        out[path] = 0
    except OSError as e:
        out[path] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"""


def _ops(umask):
    u = f"{umask:03o}"
    ops = []
    for d in list(LOWER) + list(UPPER):
        ops += [("file", f"{d}/f{u}", 0o666), ("file", f"{d}/x{u}", 0o755),
                ("file", f"{d}/r{u}", 0o444), ("dir", f"{d}/d{u}", 0o777),
                ("dir", f"{d}/e{u}", 0o750), ("fifo", f"{d}/p{u}", 0o666),
                ("symlink", f"{d}/l{u}", 0)]
        if "sgid" not in d and umask == UMASKS[0]:
            # made again where a name was: over a whiteout when it was a lower one
            ops += [("unlink", f"{d}/oldf", 0), ("file", f"{d}/oldf", 0o666),
                    ("rmdir", f"{d}/oldd", 0), ("dir", f"{d}/oldd", 0o777)]
    return ops


def _view(path):
    st = os.lstat(path)
    x = {}
    if not stat.S_ISLNK(st.st_mode):
        for name in ("system.posix_acl_access", "system.posix_acl_default"):
            try:
                x[name] = os.getxattr(path, name).hex()
            except OSError as e:
                x[name] = e.errno
    return {"mode": stat.filemode(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, **x}


def _root_ops():
    """Devices, which only root may make."""
    return [("chr", f"{d}/c{ROOT_UMASK:03o}", 0o666) for d in list(LOWER) + list(UPPER)]


def _run_all(mnt):
    out = {}
    for uid, umask, ops in [(USER, u, _ops(u)) for u in UMASKS] + [(0, ROOT_UMASK, _root_ops())]:
        r = wh.as_user(uid, uid, "/usr/bin/python3", "-c", CHILD, str(mnt), str(umask),
                       json.dumps(ops))
        assert r.returncode == 0, r.stderr
        for path, res in json.loads(r.stdout).items():
            out[path] = {"result": res}
        for kind, path, _ in ops:
            if kind not in ("unlink", "rmdir"):
                out[path]["after"] = _view(mnt / path)
    return out


@pytest.fixture(scope="module")
def results():
    """(kernel, ovlfs, ovlfs with xattr_permissions=1, =2) results by path."""
    with wh.public_dir() as pub:
        k = helpers.build_layers(pub / "k", [LOWER], UPPER)
        out = []
        with k.kernel(mnt=pub / "mk", extra_opts=wh.KERNEL_OPTS) as km:
            out.append(_run_all(km))
        for i, opts in enumerate(((), ("xattr_permissions=1",), ("xattr_permissions=2",))):
            o = helpers.build_layers(pub / f"o{i}", [LOWER], UPPER)
            with o.ovlfs(mnt=pub / f"mo{i}", extra_opts=opts) as om:
                out.append(_run_all(om))
        yield out


def _all_paths():
    return [p for u in UMASKS for k, p, _ in _ops(u) if k not in ("unlink", "rmdir")] + \
        [p for _, p, _ in _root_ops()]


@pytest.mark.parametrize("path", _all_paths())
def test_same_as_kernel(results, path):
    kernel, ovlfs = results[:2]
    assert ovlfs[path] == kernel[path], f"{path}: kernel {kernel[path]} ovlfs {ovlfs[path]}"


@pytest.mark.parametrize("level", [1, 2])
def test_override_xattr_keeps_the_same_mode(results, level):
    """With xattr_permissions= the shown mode is the one recorded in the override xattr:
    it must be the one the umask or the default ACL gave."""
    kernel, ovlfs = results[0], results[1 + level]

    def modes(side):
        return {p: (r["result"], r["after"]["mode"], r["after"]["uid"], r["after"]["gid"])
                for p, r in side.items() if "after" in r}
    assert modes(ovlfs) == modes(kernel)


def test_reference_cases(results):
    """The kernel's own results for the cases that showed the bug (guards the setup), and
    ovlfs's."""
    for side in results[:2]:
        # a read-only default ACL, umask 077: the umask would have taken the group's read
        assert side["lower_acl_ro/r077"]["after"]["mode"] == "-r--r-----"
        assert side["upper_acl_ro/f077"]["after"]["mode"] == "-r--r-----"
        # a named group entry keeps rwx (the mask is not narrowed by the umask)
        assert side["lower_acl_named/d022"]["after"]["mode"] == "drwxrwxr-x"
        assert side["lower_acl_named/f077"]["after"]["mode"] == "-rw-rw-r--"
        # a setgid directory with a default ACL: group write stays, setgid is inherited
        assert side["lower_sgid/d022"]["after"]["mode"] == "drwxrwsr-x"
        assert side["lower_sgid/d022"]["after"]["gid"] == GROUP
        # no default ACL: the umask applies
        assert side["lower_plain/f077"]["after"]["mode"] == "-rw-------"
        assert side["upper_sgid_plain/d077"]["after"]["mode"] == "drwx--S---"
        assert side["lower_plain/p022"]["after"]["mode"] == "prw-r--r--"
        assert side["upper_acl_rwx/p077"]["after"]["mode"] == "prw-rw-r--"
        # devices, made by root with umask 027
        assert side["lower_plain/c027"]["after"]["mode"] == "crw-r-----"
        assert side["upper_acl_rwx/c027"]["after"]["mode"] == "crw-rw-r--"
