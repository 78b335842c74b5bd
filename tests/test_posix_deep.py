"""Objects deeper than PATH_MAX below their layer root, on the kernel overlayfs and on ovlfs.

A directory chain whose path from the layer root is longer than 4096 bytes (PATH_MAX), and
longer than 8192 too, is built twice: once through the mount on the upper layer, once on a
lower layer's disk before mounting. At the deepest level the same operations (create, write,
read, chmod, chown, truncate, utime, xattrs, readdir, rename, mkdir/rmdir, unlink, copy-up
of the whole chain) run on a kernel overlayfs and on an ovlfs mount over identical layers,
then both trees are removed; each step's result (value or errno name) and the upper layers
left must be the same on both sides. The kernel works at any depth: its layers are walked by
dentry, never by path.

Python's path functions hit PATH_MAX themselves, so everything here goes through directory
fds (dir_fd=, fd arguments, short /proc/self/fd/N/NAME paths, shutil.rmtree's fd walk).
"""
import errno
import os
import shutil
import stat

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

LEVELS = 45  # of 200-byte names: 9045 bytes, past PATH_MAX and OVL_PATH_MAX (2 * PATH_MAX)
NAMES = [f"{i:03d}" + "d" * 197 for i in range(LEVELS)]
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _open_chain(dfd, names, create=False):
    """The fd of dfd/names[0]/.../names[-1], opened one level at a time (mkdir first when
    create)."""
    fd = os.dup(dfd)
    for n in names:
        try:
            if create:
                os.mkdir(n, 0o755, dir_fd=fd)
            nfd = os.open(n, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = nfd
    return fd


def _build_lower_chain(lower):
    """lower/l/<NAMES...>/ holding f, x (with a user xattr) and sub/s, built on disk."""
    root = os.open(lower, DIR_FLAGS)
    try:
        fd = _open_chain(root, ["l"] + NAMES, create=True)
    finally:
        os.close(root)
    try:
        for name, data in (("f", b"lower data\n"), ("x", b"has an xattr\n")):
            f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
            os.write(f, data)
            os.close(f)
        os.setxattr(f"/proc/self/fd/{fd}/x", "user.lower", b"below")
        os.mkdir("sub", 0o755, dir_fd=fd)
        s = os.open("sub", DIR_FLAGS, dir_fd=fd)
        os.close(os.open("s", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=s))
        os.close(s)
    finally:
        os.close(fd)


def _result(fn):
    try:
        return fn()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def _st(fd, name):
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    return {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size}


def _write(fd, name, data, flags=os.O_WRONLY):
    f = os.open(name, flags, 0o644, dir_fd=fd)
    try:
        return os.write(f, data)
    finally:
        os.close(f)


def _read(fd, name):
    f = os.open(name, os.O_RDONLY, dir_fd=fd)
    try:
        return os.read(f, 4096).decode()
    finally:
        os.close(f)


def _utime(fd, name):
    os.utime(name, ns=(1_000_000_000, 2_000_000_000), dir_fd=fd, follow_symlinks=False)
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    return [st.st_atime_ns, st.st_mtime_ns]


def _steps(fd, root):
    """The operations at the deepest level fd (root: the mount root's fd), as (label, fn)."""
    proc = f"/proc/self/fd/{fd}"
    return [
        ("create", lambda: _write(fd, "new", b"hello deep\n", os.O_WRONLY | os.O_CREAT)),
        ("read", lambda: _read(fd, "new")),
        ("stat", lambda: _st(fd, "new")),
        ("chmod", lambda: (os.chmod("new", 0o640, dir_fd=fd), _st(fd, "new"))[1]),
        ("chown", lambda: (os.chown("new", 1000, 1001, dir_fd=fd), _st(fd, "new"))[1]),
        ("truncate", lambda: (os.truncate(f"{proc}/new", 5), _st(fd, "new"))[1]),
        ("utime", lambda: _utime(fd, "new")),
        ("setxattr", lambda: os.setxattr(f"{proc}/new", "user.k", b"v")),
        ("getxattr", lambda: os.getxattr(f"{proc}/new", "user.k").decode()),
        ("listxattr", lambda: sorted(x for x in os.listxattr(f"{proc}/new")
                                     if x.startswith("user."))),
        ("removexattr", lambda: os.removexattr(f"{proc}/new", "user.k")),
        ("mkdir", lambda: os.mkdir("d", 0o700, dir_fd=fd)),
        ("mkdir_stat", lambda: _st(fd, "d")),
        ("chmod_dir", lambda: (os.chmod("d", 0o750, dir_fd=fd), _st(fd, "d"))[1]),
        ("listdir", lambda: sorted(os.listdir(fd))),
        ("rename", lambda: os.rename("new", "new2", src_dir_fd=fd, dst_dir_fd=fd)),
        ("rename_up", lambda: os.rename("new2", "up", src_dir_fd=fd, dst_dir_fd=root)),
        ("rename_down", lambda: os.rename("up", "new3", src_dir_fd=root, dst_dir_fd=fd)),
        ("listdir2", lambda: sorted(os.listdir(fd))),
        ("read2", lambda: _read(fd, "new3")),
        ("rmdir", lambda: os.rmdir("d", dir_fd=fd)),
        ("unlink", lambda: os.unlink("new3", dir_fd=fd)),
        ("listdir3", lambda: sorted(os.listdir(fd))),
    ]


def _lower_steps(fd):
    """Operations on what the lower layer holds at the deepest level: copy-ups of the chain,
    whiteouts, and a rename over a directory emptied by whiteouts."""
    proc = f"/proc/self/fd/{fd}"
    return [
        ("l_read", lambda: _read(fd, "f")),
        ("l_chmod", lambda: (os.chmod("f", 0o600, dir_fd=fd), _st(fd, "f"))[1]),
        ("l_write", lambda: _write(fd, "f", b"upper")),
        ("l_read2", lambda: _read(fd, "f")),
        ("l_getxattr", lambda: os.getxattr(f"{proc}/x", "user.lower").decode()),
        ("l_setxattr", lambda: os.setxattr(f"{proc}/x", "user.more", b"1")),
        ("l_listxattr", lambda: sorted(x for x in os.listxattr(f"{proc}/x")
                                       if x.startswith("user."))),
        ("l_truncate", lambda: (os.truncate(f"{proc}/x", 3), _st(fd, "x"))[1]),
        ("l_utime", lambda: _utime(fd, "x")),
        ("l_chown", lambda: (os.chown("x", 1002, 1002, dir_fd=fd), _st(fd, "x"))[1]),
        ("l_rename", lambda: os.rename("f", "g", src_dir_fd=fd, dst_dir_fd=fd)),
        ("l_unlink", lambda: os.unlink("g", dir_fd=fd)),
        ("l_unlink_sub", lambda: os.unlink(f"{proc}/sub/s")),
        ("l_listdir_sub", lambda: os.listdir(f"{proc}/sub")),
        ("l_mkdir", lambda: os.mkdir("t", dir_fd=fd)),
        ("l_rename_over", lambda: os.rename("t", "sub", src_dir_fd=fd, dst_dir_fd=fd)),
        ("l_listdir", lambda: sorted(os.listdir(fd))),
        ("l_rmdir", lambda: os.rmdir("sub", dir_fd=fd)),
        ("l_listdir2", lambda: sorted(os.listdir(fd))),
    ]


def _upper_tree(upper):
    """The upper layer, walked through fds: {path: (type, mode, uid, gid, size, user xattrs)}
    (a directory's size is left out: it is the upper filesystem's business)."""
    out = {}

    def walk(dfd, rel):
        for name in sorted(os.listdir(dfd)):
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            path = f"{rel}/{name}"
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                p = f"/proc/self/fd/{dfd}/{name}"
                xattrs = {x: os.getxattr(p, x, follow_symlinks=False)
                          for x in os.listxattr(p, follow_symlinks=False)
                          if x.startswith("user.")}
            out[path] = (stat.S_IFMT(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_uid,
                         st.st_gid, None if stat.S_ISDIR(st.st_mode) else st.st_size,
                         st.st_rdev if stat.S_ISCHR(st.st_mode) else None, xattrs)
            if stat.S_ISDIR(st.st_mode):
                cfd = os.open(name, DIR_FLAGS, dir_fd=dfd)
                try:
                    walk(cfd, path)
                finally:
                    os.close(cfd)

    fd = os.open(upper, DIR_FLAGS)
    try:
        walk(fd, "")
    finally:
        os.close(fd)
    return out


def _run(mnt, upper):
    res = []
    root = os.open(mnt, DIR_FLAGS)
    try:
        res.append(("mkdir_chain", _result(lambda: os.close(
            _open_chain(root, ["u"] + NAMES, create=True)))))
        for top, steps in (("u", lambda fd: _steps(fd, root)),
                           # then the same steps in a directory copied up from below
                           ("l", lambda fd: _lower_steps(fd) + [
                               (f"lc_{label}", fn) for label, fn in _steps(fd, root)])):
            fd = _result(lambda: _open_chain(root, [top] + NAMES))
            res.append((f"open_{top}", isinstance(fd, int) or fd))
            if not isinstance(fd, int):
                continue
            try:
                res += [(label, _result(fn)) for label, fn in steps(fd)]
            finally:
                os.close(fd)
    finally:
        os.close(root)
    tree = _upper_tree(upper)
    for top in ("u", "l"):
        res.append((f"rmtree_{top}", _result(lambda: shutil.rmtree(mnt / top))))
    res.append(("root_after", _result(lambda: sorted(os.listdir(mnt)))))
    return res, tree, _upper_tree(upper)


@pytest.fixture(scope="module")
def results():
    with wh.public_dir() as pub:
        sets = {side: helpers.build_layers(pub / side, [{}], {})
                for side in ("k", "o")}
        for ls in sets.values():
            _build_lower_chain(ls.lowers[0])
        with sets["k"].kernel(mnt=pub / "mk", extra_opts=wh.KERNEL_OPTS) as km:
            kernel = _run(km, sets["k"].upper)
        with sets["o"].ovlfs(mnt=pub / "mo") as om:
            ovlfs = _run(om, sets["o"].upper)
        yield kernel, ovlfs


def test_kernel_reference_succeeds(results):
    """Guards the setup: on the kernel every step works."""
    steps = results[0][0]
    failed = [(label, r) for label, r in steps
              if isinstance(r, str) and r.isupper() and r.startswith("E")]
    assert not failed, failed


def test_steps_as_on_kernel(results):
    (kernel, _, _), (ovlfs, _, _) = results
    k, o = dict(kernel), dict(ovlfs)
    diff = [(label, k.get(label), o.get(label)) for label in k | o if k.get(label) != o.get(label)]
    assert not diff, f"(step, kernel, ovlfs): {diff}"


def test_upper_layer_as_on_kernel(results):
    """The deep objects left on the upper layer before the trees go, and after."""
    (_, kbefore, kafter), (_, obefore, oafter) = results
    assert any(len(p) > 2 * 4096 for p in kbefore), "the chain is not deep enough"
    diff = sorted(p for p in set(kbefore) | set(obefore) if kbefore.get(p) != obefore.get(p))
    assert not diff, [(p[-60:], kbefore.get(p), obefore.get(p)) for p in diff[:10]]
    assert oafter == kafter
