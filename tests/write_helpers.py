"""Helpers of the write-side tests (test_write.py, test_differential_write.py,
test_crossmount.py, test_enospc.py). The shared fixtures and mount helpers live in
conftest.py / helpers.py; this file adds what only writing needs:

* libc calls Python lacks: renameat2 (with flags), utimensat with UTIME_NOW/UTIME_OMIT,
  fallocate with modes, getdents64 with a small buffer (per-fd readdir snapshots).
* Upper-layer inspection: is_whiteout, opaque_of, compact trees (tree()), upper snapshots that
  keep the escaped trusted.overlay.overlay.* names but drop origin/impure/uuid/redirect.
* A step runner (run_steps) used by the differential, cross-mount and ENOSPC tests: a step is
  a tuple (op, *args) with paths relative to the mount; its result is a plain value (data,
  names, a small stat dict, 0) or the errno name of the OSError it raised.
* mount(): ovlfs by default; OVLFS_WRITE_BACKEND=kernel runs the same test against the kernel
  overlayfs, to check the expectations of test_write.py against the reference.
"""
import contextlib
import ctypes
import errno
import hashlib
import mmap
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile
import time

from helpers import OPAQUE, snapshot

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 0x10
SYS_getdents64 = {"x86_64": 217, "aarch64": 61}.get(os.uname().machine, 217)
# Kernel overlay options of the reference: the kernel's defaults made explicit (no redirects,
# no index, no metacopy), i.e. the on-disk format ovlfs writes and reads.
KERNEL_OPTS = ("index=off", "redirect_dir=off", "metacopy=off")
# ovlfs in the same format (its defaults are redirect_dir=on and index=on where possible).
OVLFS_OPTS = ("index=off", "redirect_dir=off")
# Overlay xattrs left out when upper layers are compared (kernel bookkeeping, not semantics).
IGNORED_UPPER_XATTRS = tuple(f"trusted.overlay.{n}" for n in
                             ("origin", "impure", "uuid", "redirect", "nlink", "upper"))
BACKEND = os.environ.get("OVLFS_WRITE_BACKEND", "ovlfs")


def _raise(ret, what=""):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), what)
    return ret


def renameat2(src, dst, flags=0):
    f = libc.renameat2
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return _raise(f(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags), str(src))


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _ts(v):
    if v == "now":
        return _Timespec(0, UTIME_NOW)
    if v == "omit":
        return _Timespec(0, UTIME_OMIT)
    return _Timespec(v // 10**9, v % 10**9)


def utimensat(path, atime, mtime, follow=False):
    """atime/mtime: nanoseconds, 'now' (UTIME_NOW) or 'omit' (UTIME_OMIT)."""
    times = (_Timespec * 2)(_ts(atime), _ts(mtime))
    f = libc.utimensat
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
    return _raise(f(AT_FDCWD, os.fsencode(path), times, 0 if follow else AT_SYMLINK_NOFOLLOW),
                  str(path))


def fallocate(fd, mode, offset, length):
    f = libc.fallocate
    f.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    return _raise(f(fd, mode, offset, length))


def getdents(fd, bufsize=64):
    """Names returned by one getdents64 call with a small buffer ([] at the end)."""
    buf = ctypes.create_string_buffer(bufsize)
    f = libc.syscall
    f.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    n = _raise(f(SYS_getdents64, fd, buf, bufsize))
    raw, names, pos = buf.raw[:n], [], 0
    while pos < n:
        reclen = int.from_bytes(raw[pos + 16:pos + 18], "little")
        names.append(os.fsdecode(raw[pos + 19:pos + reclen].split(b"\0", 1)[0]))
        pos += reclen
    return names


# --------------------------------------------------------------------------- inspection

def lstat_or_none(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def is_whiteout(path):
    st = lstat_or_none(path)
    return st is not None and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def opaque_of(path):
    """Value of trusted.overlay.opaque on a layer directory, or None."""
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False)
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        raise


def read(path):
    """Reads a whole file without touching its atime where O_NOATIME is allowed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOATIME)
    except OSError:
        fd = os.open(path, os.O_RDONLY)
    with open(fd, "rb") as f:
        return f.read()


def sha(data):
    return hashlib.sha256(data).hexdigest()[:16]


def _describe(path, st, upper):
    m = st.st_mode
    if stat.S_ISDIR(m):
        o = opaque_of(path) if upper else None
        return "D" if o is None else ("D:opaque" if o == b"y" else f"D:opaque={o!r}")
    if stat.S_ISREG(m):
        if st.st_size > 256:
            return f"sha:{sha(read(path))}"
        data = read(path)
        try:
            return data.decode()
        except UnicodeDecodeError:
            return repr(data)
    if stat.S_ISLNK(m):
        return "-> " + os.readlink(path)
    if stat.S_ISCHR(m) or stat.S_ISBLK(m):
        if upper and stat.S_ISCHR(m) and st.st_rdev == 0:
            return "W"
        kind = "chr" if stat.S_ISCHR(m) else "blk"
        return f"{kind} {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return "fifo" if stat.S_ISFIFO(m) else "sock" if stat.S_ISSOCK(m) else f"?{m:o}"


def tree(root, upper=False):
    """Compact view of a tree: {relpath: 'D' | 'D:opaque' | content | 'sha:..' | '-> target' |
    'chr 1:3' | 'fifo' | 'sock' | 'W' (upper whiteout)}; the root itself is left out."""
    out = {}
    root = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = _describe(p, os.lstat(p), upper)
    return out


def norm_times(snap, since_ns):
    """Replaces every mtime at or after since_ns by 'now' (times set while the test ran differ
    between two runs; times kept from the layers, or set explicitly, must be equal)."""
    for rec in snap.values():
        if isinstance(rec.get("mtime_ns"), int) and rec["mtime_ns"] >= since_ns:
            rec["mtime_ns"] = "now"
    return snap


def visible_snapshot(mnt, since_ns, dir_nlink=True):
    return norm_times(snapshot(mnt, overlay_xattrs=True, dir_nlink=dir_nlink), since_ns)


def upper_snapshot(upper, since_ns, mtime=True, keep=()):
    """Upper layer: whiteouts, opaque values and every xattr, including the escaped
    trusted.overlay.overlay.* names, except the kernel's bookkeeping (IGNORED_UPPER_XATTRS)
    other than the names in keep (e.g. trusted.overlay.redirect where both write it)."""
    snap = snapshot(upper, upper=True, dir_nlink=False, mtime=mtime, overlay_xattrs=True)
    for rec in snap.values():
        if "xattrs" in rec:
            rec["xattrs"] = tuple((n, v) for n, v in rec["xattrs"]
                                  if n in keep or not n.startswith(IGNORED_UPPER_XATTRS))
    return norm_times(snap, since_ns)


def link_groups(root):
    """Sorted lists of paths sharing one inode (hard-link sets) in a tree."""
    by_ino = {}
    root = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            st = lstat_or_none(p)  # a listed name that does not stat is the snapshot's finding
            if st is not None:
                by_ino.setdefault(st.st_ino, []).append(os.path.relpath(p, root))
    return sorted(sorted(v) for v in by_ino.values() if len(v) > 1)


def work_leftovers(work):
    """Entries in the work directory's scratch area (work/work, as the kernel and ovlfs
    use), which must be empty whenever no operation is running."""
    if work is None:
        return []
    w = pathlib.Path(work) / "work"
    return sorted(os.listdir(w)) if w.is_dir() else []


def make_sparse(path, size, chunks):
    """A sparse file of the given size with data only where chunks {offset: bytes} say."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in chunks.items():
            f.seek(off)
            f.write(data)


def allocated(path):
    return os.lstat(path).st_blocks * 512


# --------------------------------------------------------------------------- mounting

def mount(ls, mnt=None, ovlfs_opts=()):
    """The mount under test for a LayerSet: ovlfs (with ovlfs_opts), or the kernel's
    overlayfs when OVLFS_WRITE_BACKEND=kernel (to check a test's expectations against the
    reference)."""
    if BACKEND == "kernel":
        # an index= of the test holds for the reference too (the kernel's own option)
        index = [o for o in ovlfs_opts if o.startswith("index=")]
        opts = tuple(o for o in KERNEL_OPTS if not (index and o.startswith("index="))) + \
            tuple(index)
        return ls.kernel(mnt=mnt, extra_opts=opts)
    return ls.ovlfs(mnt=mnt, extra_opts=ovlfs_opts)


@contextlib.contextmanager
def public_dir():
    """A directory every user can traverse (pytest's base temp dir is 0700), for mount points
    that an unprivileged child process must reach. Removed afterwards."""
    d = tempfile.mkdtemp(prefix="ovlfs-pub-")
    os.chmod(d, 0o755)
    try:
        yield pathlib.Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def as_user(uid, gid, *cmd, cwd=None):
    """Runs cmd with real/effective uid and gid set and no supplementary groups."""
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                           "--", *cmd], capture_output=True, text=True, cwd=cwd)


# --------------------------------------------------------------------------- step runner

def _stat(path, fd=None):
    st = os.fstat(fd) if fd is not None else os.lstat(path)
    rec = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink}
    if not stat.S_ISDIR(st.st_mode):
        rec["size"] = st.st_size
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        rec["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    rec["mtime_ns"] = st.st_mtime_ns
    return rec


def _data(b):
    if len(b) > 256:
        return f"{len(b)} bytes sha:{sha(b)}"
    try:
        return b.decode()
    except UnicodeDecodeError:
        return repr(b)


def _write_file(path, data, flags, offset=None):
    fd = os.open(path, flags, 0o644)
    try:
        n = os.pwrite(fd, data, offset) if offset is not None else os.write(fd, data)
    finally:
        os.close(fd)
    return n


def _dirstream(root, path, create):
    """Rule 22: an open directory fd keeps its listing until rewound. Reads one small chunk,
    creates `create` through the mount, reads the rest, then rewinds and reads again.
    Returns (new name seen before the rewind, new name seen after it)."""
    fd = os.open(root / path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        seen = getdents(fd)
        os.close(os.open(root / path / create, os.O_CREAT | os.O_WRONLY, 0o644))
        while chunk := getdents(fd):
            seen += chunk
        os.lseek(fd, 0, os.SEEK_SET)
        again = []
        while chunk := getdents(fd):
            again += chunk
        return [create in seen, create in again]
    finally:
        os.close(fd)


def _mmap_open(state, name, path, length):
    fd = os.open(path, os.O_RDONLY)
    state["maps"][name] = (fd, mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ))


def _op(root, state, op, args):
    P = lambda p: root / p  # noqa: E731
    fds = state["fds"]
    if op == "read":
        return _data(read(P(args[0])))
    if op == "write":  # path, data[, offset]: O_WRONLY, no truncation
        return _write_file(P(args[0]), args[1], os.O_WRONLY, *args[2:])
    if op == "append":
        return _write_file(P(args[0]), args[1], os.O_WRONLY | os.O_APPEND)
    if op == "creat":
        return _write_file(P(args[0]), args[1] if len(args) > 1 else b"",
                           os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    if op == "excl":
        os.close(os.open(P(args[0]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return 0
    if op == "open":  # path, flags: open and close
        os.close(os.open(P(args[0]), args[1]))
        return 0
    if op == "truncate":
        return os.truncate(P(args[0]), args[1]) or 0
    if op == "unlink":
        return os.unlink(P(args[0])) or 0
    if op == "rmdir":
        return os.rmdir(P(args[0])) or 0
    if op == "mkdir":
        return os.mkdir(P(args[0]), *args[1:]) or 0
    if op == "mknod":  # path, 'c'|'b'|'p'|'s', major, minor
        kind = {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO, "s": stat.S_IFSOCK}
        return os.mknod(P(args[0]), kind[args[1]] | 0o644,
                        os.makedev(*args[2:4]) if len(args) > 2 else 0) or 0
    if op == "symlink":  # target, path
        return os.symlink(args[0], P(args[1])) or 0
    if op == "link":
        return os.link(P(args[0]), P(args[1]), follow_symlinks=False) or 0
    if op == "rename":  # src, dst[, flags]
        return renameat2(P(args[0]), P(args[1]), *args[2:])
    if op == "chmod":
        return os.chmod(P(args[0]), args[1]) or 0
    if op == "chown":
        return os.chown(P(args[0]), args[1], args[2], follow_symlinks=False) or 0
    if op == "utime":  # path, atime, mtime ('now'/'omit'/ns)
        return utimensat(P(args[0]), args[1], args[2])
    if op == "setx":
        return os.setxattr(P(args[0]), args[1], args[2], *args[3:], follow_symlinks=False) or 0
    if op == "rmx":
        return os.removexattr(P(args[0]), args[1], follow_symlinks=False) or 0
    if op == "getx":
        return _data(os.getxattr(P(args[0]), args[1], follow_symlinks=False))
    if op == "listx":
        return sorted(os.listxattr(P(args[0]), follow_symlinks=False))
    if op == "stat":
        return _stat(P(args[0]))
    if op == "ls":
        return sorted(os.listdir(P(args[0])))
    if op == "readlink":
        return os.readlink(P(args[0]))
    if op == "access":
        return os.access(P(args[0]), args[1])
    if op == "fallocate":  # path, mode, offset, length
        fd = os.open(P(args[0]), os.O_WRONLY)
        try:
            return fallocate(fd, *args[1:])
        finally:
            os.close(fd)
    if op == "copyrange":  # src, dst, count, src offset
        fi, fo = os.open(P(args[0]), os.O_RDONLY), os.open(P(args[1]), os.O_WRONLY | os.O_CREAT)
        try:
            return os.copy_file_range(fi, fo, args[2], args[3] if len(args) > 3 else 0)
        finally:
            os.close(fi)
            os.close(fo)
    if op == "sparse":  # path: (size, allocated below 8 MiB, data offsets found)
        fd = os.open(P(args[0]), os.O_RDONLY)
        try:
            st, offs, off = os.fstat(fd), [], 0
            while True:
                try:
                    off = os.lseek(fd, off, os.SEEK_DATA)
                except OSError as e:
                    if e.errno != errno.ENXIO:
                        raise
                    break
                offs.append(off)
                off = os.lseek(fd, off, os.SEEK_HOLE)
            return [st.st_size, st.st_blocks * 512 < (8 << 20), offs]
        finally:
            os.close(fd)
    if op == "pread":  # path, length, offset
        fd = os.open(P(args[0]), os.O_RDONLY)
        try:
            return _data(os.pread(fd, args[1], args[2]))
        finally:
            os.close(fd)
    if op == "statfs":
        sv = os.statvfs(P(args[0]))
        return [sv.f_blocks * sv.f_frsize, sv.f_namemax]
    if op == "dirstream":  # dir, name to create
        return _dirstream(root, args[0], args[1])
    # fd-level steps: fopen NAME PATH FLAGS, fread NAME LEN OFF, fwrite NAME DATA OFF,
    # fstat NAME, fsync NAME, fclose NAME; mmap NAME PATH LEN, mread NAME LEN, munmap NAME
    if op == "fopen":
        fds[args[0]] = os.open(P(args[1]), args[2], 0o644)
        return 0
    if op == "fread":
        return _data(os.pread(fds[args[0]], args[1], args[2]))
    if op == "fwrite":
        return os.pwrite(fds[args[0]], args[1], args[2])
    if op == "fstat":
        st = os.fstat(fds[args[0]])
        return [st.st_size, oct(st.st_mode)]
    if op == "fsync":
        return os.fsync(fds[args[0]]) or 0
    if op == "fclose":
        return os.close(fds.pop(args[0])) or 0
    if op == "mmap":
        return _mmap_open(state, args[0], P(args[1]), args[2]) or 0
    if op == "mread":
        return _data(state["maps"][args[0]][1][:args[1]])
    if op == "munmap":
        fd, m = state["maps"].pop(args[0])
        m.close()
        os.close(fd)
        return 0
    raise ValueError(f"unknown step {op!r}")


def norm_result(value, since_ns):
    if isinstance(value, dict) and isinstance(value.get("mtime_ns"), int):
        value = dict(value)
        if value["mtime_ns"] >= since_ns:
            value["mtime_ns"] = "now"
    return value


def run_steps(root, steps, since_ns=None):
    """Applies steps to the tree at root; returns one result per step (errno names for
    failures). Every fd and mapping a step opened is closed at the end."""
    root = pathlib.Path(root)
    since_ns = since_ns if since_ns is not None else time.time_ns() - 10**9
    state = {"fds": {}, "maps": {}}
    results = []
    try:
        for step in steps:
            try:
                results.append(norm_result(_op(root, state, step[0], step[1:]), since_ns))
            except OSError as e:
                results.append(errno.errorcode.get(e.errno, str(e.errno)))
    finally:
        for fd, m in state["maps"].values():
            m.close()
            os.close(fd)
        for fd in state["fds"].values():
            os.close(fd)
    return results
