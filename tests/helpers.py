"""Shared helpers of the ovlfs pytest suite.

* Layer building from a compact spec (build_layer, build_layers, LayerSet).
* Mounting: mount_ovlfs (the daemon under test), mount_kernel (the reference overlayfs),
  mount_tmpfs (scratch filesystems); every one of them always cleans up after itself.
* Tree snapshots and readable snapshot diffs (snapshot, snapshot_upper, assert_same_tree).

Layer spec: a dict mapping a relative path ("a/b/c" is allowed; missing parents are created
as plain 0755 directories) to an entry:
    "text" or b"bytes"        regular file with that content
    {...}                      directory with those children
    File(...), Dir(...), Symlink(...), Hardlink(...), Fifo(...), Chr(...), Blk(...),
    Socket(...), Whiteout(), XWhiteout(), Opaque({...})
Every entry gets FIXED_MTIME (unless told otherwise) so that two builds compare equal.
"""
import contextlib
import dataclasses
import errno
import hashlib
import os
import pathlib
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXED_MTIME = 1_500_000_000  # every built entry gets this mtime (and atime) unless told otherwise
OVL_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
OPAQUE = "trusted.overlay.opaque"
XWHITEOUT = "trusted.overlay.whiteout"
MOUNT_TIMEOUT = 10.0  # seconds to wait for a mount to appear
EXIT_TIMEOUT = 5.0  # seconds to wait for a daemon to exit after unmount / SIGTERM


# Set by `make mount-tests-uring`, which runs every test with -o uring=1: a daemon killed
# there leaves requests in its queues, which the kernel's io_uring teardown fails with
# ECONNABORTED or ECANCELED.
URING = os.environ.get("OVLFS_TEST_URING") == "1"
DEAD_MOUNT_ERRNOS = ({errno.ENOTCONN, errno.ECONNABORTED, errno.ECANCELED} if URING
                     else {errno.ENOTCONN})


def ovlfs_binary():
    return pathlib.Path(os.environ.get("OVLFS_BIN", REPO / "build" / "ovlfs"))


def _why_no_fuse():
    if os.geteuid() != 0:
        return "mount tests need root (mknod whiteouts, trusted.* xattrs, mount)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    return None


def _why_no_kernel_overlay():
    if os.geteuid() != 0:
        return "kernel overlay mounts need root"
    def listed():
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    if not listed():
        subprocess.run(["modprobe", "overlay"], capture_output=True)
    return None if listed() else "kernel overlayfs is not available"


needs_fuse = pytest.mark.skipif(_why_no_fuse() is not None, reason=str(_why_no_fuse()))
needs_kernel_overlay = pytest.mark.skipif(
    _why_no_kernel_overlay() is not None, reason=str(_why_no_kernel_overlay()))


# --------------------------------------------------------------------------- layer specs

@dataclasses.dataclass(kw_only=True)
class _Meta:
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    xattrs: dict = dataclasses.field(default_factory=dict)
    mtime: int = FIXED_MTIME


@dataclasses.dataclass
class File(_Meta):
    content: bytes | str = b""


@dataclasses.dataclass
class Dir(_Meta):
    children: dict = dataclasses.field(default_factory=dict)
    mode: int = dataclasses.field(default=0o755, kw_only=True)
    opaque: bytes | str | None = dataclasses.field(default=None, kw_only=True)  # overlay.opaque


@dataclasses.dataclass
class Symlink(_Meta):
    target: str = ""
    mode: int = dataclasses.field(default=0o777, kw_only=True)  # ignored by Linux


@dataclasses.dataclass
class Hardlink:
    target: str  # path relative to the layer root of an entry of the same layer


@dataclasses.dataclass
class Fifo(_Meta):
    pass


@dataclasses.dataclass
class Chr(_Meta):
    major: int = 1
    minor: int = 3
    mode: int = dataclasses.field(default=0o666, kw_only=True)


@dataclasses.dataclass
class Blk(_Meta):
    major: int = 7
    minor: int = 0
    mode: int = dataclasses.field(default=0o660, kw_only=True)


@dataclasses.dataclass
class Socket(_Meta):
    mode: int = dataclasses.field(default=0o755, kw_only=True)


def Whiteout(mode=0o600, **kw):
    """Overlay whiteout: char device 0/0 (any mode)."""
    return Chr(major=0, minor=0, mode=mode, **kw)


def XWhiteout(**kw):
    """Zero-size file carrying trusted.overlay.whiteout. It is a whiteout only in a lower-layer
    directory marked trusted.overlay.opaque=x (Dir(opaque='x'))."""
    return File(content=b"", xattrs={XWHITEOUT: b""}, **kw)


def Opaque(children=None, value="y", **kw):
    return Dir(children=children or {}, opaque=value, **kw)


def _b(v):
    return v.encode() if isinstance(v, str) else v


def _flatten(spec, prefix=""):
    for name, entry in spec.items():
        rel = f"{prefix}/{name}" if prefix else name
        if isinstance(entry, dict):
            entry = Dir(children=entry)
        elif isinstance(entry, (str, bytes)):
            entry = File(content=entry)
        yield rel, entry
        if isinstance(entry, Dir):
            yield from _flatten(entry.children, rel)


def build_layer(root, spec):
    """Creates the tree described by spec under root (root itself becomes a 0755 directory
    with FIXED_MTIME). Returns root as a Path."""
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    made = {".": Dir()}  # rel -> entry, for the metadata pass
    links = []
    entries = sorted(_flatten(spec), key=lambda item: item[0].count("/"))
    for rel, e in entries:
        path = root / rel
        for parent in reversed(pathlib.PurePath(rel).parents[:-1]):
            if not (root / parent).exists():
                os.mkdir(root / parent)
                made[str(parent)] = Dir()
        if isinstance(e, Hardlink):
            links.append((rel, e))
            continue
        made[rel] = e
        if isinstance(e, File):
            with open(path, "wb") as f:
                f.write(_b(e.content))
        elif isinstance(e, Dir):
            if not path.is_dir():
                os.mkdir(path)
        elif isinstance(e, Symlink):
            os.symlink(e.target, path)
        elif isinstance(e, Fifo):
            os.mkfifo(path)
        elif isinstance(e, (Chr, Blk)):
            kind = stat.S_IFCHR if isinstance(e, Chr) else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(e.major, e.minor))
        elif isinstance(e, Socket):
            _make_socket(path)
        else:
            raise TypeError(f"unknown layer entry {e!r} at {rel}")
    for rel, e in links:
        os.link(root / e.target, root / rel)
    # Metadata: owner before mode (chown clears setuid bits), xattrs, then times, deepest first.
    for rel in sorted(made, key=lambda r: -r.count("/") if r != "." else 1):
        e, path = made[rel], root / rel
        os.lchown(path, e.uid, e.gid)
        if not isinstance(e, Symlink):
            os.chmod(path, e.mode)
        for name, value in e.xattrs.items():
            os.setxattr(path, name, _b(value), follow_symlinks=False)
        if isinstance(e, Dir) and e.opaque is not None:
            os.setxattr(path, OPAQUE, _b(e.opaque))
    for rel in sorted(made, key=lambda r: -r.count("/") if r != "." else 1):
        t = made[rel].mtime * 10**9
        os.utime(root / rel, ns=(t, t), follow_symlinks=False)
    return root


def _make_socket(path):
    # sun_path is limited to 108 bytes: bind a short relative name from inside the directory.
    cwd = os.getcwd()
    try:
        os.chdir(path.parent)
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path.name)
    finally:
        os.chdir(cwd)


@dataclasses.dataclass
class LayerSet:
    """Layer directories of one overlay: lowers top first; upper/work None for read-only."""
    base: pathlib.Path
    lowers: list
    upper: pathlib.Path | None = None
    work: pathlib.Path | None = None

    def ovlfs(self, mnt=None, extra_opts=()):
        return mount_ovlfs(self.lowers, self.upper, self.work, extra_opts,
                           mnt or self.base / "mnt-ovlfs")

    def kernel(self, mnt=None, extra_opts=()):
        return mount_kernel(self.lowers, self.upper, self.work, extra_opts,
                            mnt or self.base / "mnt-kernel")


def build_layers(base, lowers, upper=None, rw=True):
    """Builds lower specs (top first) as base/lower0, base/lower1, ... and, when rw, the upper
    spec (None = empty) as base/upper with an empty base/work. Returns a LayerSet."""
    base = pathlib.Path(base)
    base.mkdir(parents=True, exist_ok=True)
    low = [build_layer(base / f"lower{i}", spec) for i, spec in enumerate(lowers)]
    if not rw:
        assert upper is None, "an upper spec needs rw=True"
        return LayerSet(base, low)
    up = build_layer(base / "upper", upper or {})
    work = base / "work"
    work.mkdir()
    return LayerSet(base, low, up, work)


def clone_tree(src, dst):
    """Copies a layer tree with everything (modes, owners, times, xattrs incl. trusted.*,
    hard links, devices) for a second, independent copy."""
    subprocess.run(["cp", "-a", "--preserve=all", "--", str(src), str(dst)], check=True)
    return pathlib.Path(dst)


# --------------------------------------------------------------------------- mounts

class MountError(Exception):
    pass


def _unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_fstype(path):
    """fstype of the mount whose mount point is exactly path (the last one), or None."""
    path = os.path.realpath(path)
    found = None
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3 and _unescape(fields[1]) == path:
                found = fields[2]
    return found


def is_fuse_mount(path):
    return (mount_fstype(path) or "").startswith("fuse")


def wait_fuse_mount(mnt, proc, output=lambda: ""):
    """Waits for the daemon proc to mount mnt; MountError if it exits or takes too long."""
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while not is_fuse_mount(mnt):
        if proc.poll() is not None:
            time.sleep(0.5)  # a daemon that forked despite -f may still mount: catch it
            raise MountError(f"ovlfs exited with status {proc.returncode} before mounting\n"
                             f"output: {output()}")
        if time.monotonic() > deadline:
            raise MountError(f"ovlfs did not mount within {MOUNT_TIMEOUT}s\noutput: {output()}")
        time.sleep(0.02)


def errno_result(fn):
    """fn()'s value ('ok' for None) or the errno name of the OSError it raised."""
    try:
        r = fn()
        return "ok" if r is None else r
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)


class MountPoint(type(pathlib.Path())):
    """A Path to a live mount point; .proc is the daemon's Popen (ovlfs only), .log() its
    output so far."""
    proc = None
    logfile = None

    def log(self):
        if self.logfile is None:
            return ""
        self.logfile.seek(0)
        return self.logfile.read().decode(errors="replace")


_ACTIVE = {}  # mount point -> Popen or None (kernel/tmpfs): what cleanup_leftovers undoes


def unmount(mnt, fuse):
    """Unmounts mnt if it is mounted: fusermount3 -u (fuse) or umount, then umount -l."""
    if mount_fstype(mnt) is None:
        return
    cmd = ["fusermount3", "-u", str(mnt)] if fuse else ["umount", str(mnt)]
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0 and mount_fstype(mnt) is not None:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def reap(proc, timeout=EXIT_TIMEOUT):
    """Waits for proc; SIGTERM then SIGKILL (this pid only) if it does not exit in time."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None and proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


def ovlfs_command(lowers, upper=None, work=None, extra_opts=(), mnt="MNT"):
    opts = ["lowerdir=" + ":".join(str(p) for p in lowers)]
    if upper is not None:
        opts.append(f"upperdir={upper}")
    if work is not None:
        opts.append(f"workdir={work}")
    # OVLFS_TEST_OPTS (comma-separated) goes first, so a test's own options override it:
    # e.g. OVLFS_TEST_OPTS=writeback=1 runs every mount test with the writeback cache
    opts.extend(o for o in os.environ.get("OVLFS_TEST_OPTS", "").split(",") if o)
    opts.extend(extra_opts)
    return [str(ovlfs_binary()), "-f", "-o", ",".join(opts), str(mnt)]


@contextlib.contextmanager
def mount_ovlfs(lowers, upper=None, work=None, extra_opts=(), mnt=None):
    """Runs `ovlfs -f -o lowerdir=...,upperdir=...,workdir=... MNT`, waits (bounded) for the
    fuse mount, yields a MountPoint, and always unmounts and reaps the daemon. Teardown fails
    the test if the daemon did not exit with status 0 (unless the test already failed)."""
    binary = ovlfs_binary()
    if not os.access(binary, os.X_OK):
        raise MountError(f"ovlfs binary not found at {binary} (build it or set OVLFS_BIN)")
    made_mnt = mnt is None
    mnt = pathlib.Path(mnt or tempfile.mkdtemp(prefix="ovlfs-mnt-"))
    mnt.mkdir(parents=True, exist_ok=True)
    mnt = MountPoint(os.path.realpath(mnt))
    log = tempfile.TemporaryFile()
    cmd = ovlfs_command(lowers, upper, work, extra_opts, mnt)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    mnt.proc, mnt.logfile = proc, log
    _ACTIVE[str(mnt)] = proc
    failed = None
    try:
        wait_fuse_mount(mnt, proc, lambda: f"{mnt.log()}\ncommand: {cmd}")
        yield mnt
    except BaseException as exc:
        failed = exc
        raise
    finally:
        unmount(mnt, fuse=True)
        rc = reap(proc)
        still = mount_fstype(mnt)
        _ACTIVE.pop(str(mnt), None)
        output = mnt.log()
        log.close()
        if made_mnt and still is None:
            with contextlib.suppress(OSError):
                os.rmdir(mnt)
        if failed is not None and rc != 0:  # say why the test saw errors: the daemon died
            failed.add_note(f"ovlfs exited with status {rc}; its output:\n{output[-4000:]}")
        if failed is None:
            if still is not None:
                raise MountError(f"{mnt} is still mounted ({still}) after teardown")
            if rc != 0:
                raise MountError(f"ovlfs exited with status {rc} at unmount\noutput: {output}")


def _kernel_path(p):
    s = str(p)
    if any(c in s for c in ":,\\"):
        raise ValueError(f"path needs escaping for overlay options: {s!r}")
    return s


@contextlib.contextmanager
def mount_kernel(lowers, upper=None, work=None, extra_opts=(), mnt=None):
    """Mounts the kernel overlayfs (the reference) and always unmounts it. Without upper the
    kernel needs 2+ lowers and the mount is made with -o ro."""
    if upper is None and len(lowers) < 2:
        raise ValueError("the kernel overlay needs 2+ lowers without an upper layer")
    if (upper is None) != (work is None):
        raise ValueError("upper and work go together")
    made_mnt = mnt is None
    mnt = pathlib.Path(mnt or tempfile.mkdtemp(prefix="kovl-mnt-"))
    mnt.mkdir(parents=True, exist_ok=True)
    mnt = MountPoint(os.path.realpath(mnt))
    opts = [] if upper is not None else ["ro"]
    opts.append("lowerdir=" + ":".join(_kernel_path(p) for p in lowers))
    if upper is not None:
        opts += [f"upperdir={_kernel_path(upper)}", f"workdir={_kernel_path(work)}"]
    opts.extend(extra_opts)
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", ",".join(opts), str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise MountError(f"kernel overlay mount failed: {r.stderr.strip()} (opts {opts})")
    _ACTIVE[str(mnt)] = None
    try:
        yield mnt
    finally:
        unmount(mnt, fuse=False)
        _ACTIVE.pop(str(mnt), None)
        if made_mnt and mount_fstype(mnt) is None:
            with contextlib.suppress(OSError):
                os.rmdir(mnt)


@contextlib.contextmanager
def mount_tmpfs(path, options="size=64m"):
    """Mounts a scratch tmpfs on path (created if needed) and always unmounts it."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    _ACTIVE[os.path.realpath(path)] = None
    try:
        yield path
    finally:
        unmount(path, fuse=False)
        _ACTIVE.pop(os.path.realpath(path), None)


def mounts_under(base):
    """(mount point, fstype) of every mount at or below base, deepest first."""
    base = os.path.realpath(base)
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            mnt = _unescape(fields[1])
            if mnt == base or mnt.startswith(base + "/"):
                found.append((mnt, fields[2]))
    return sorted(found, key=lambda m: -len(m[0]))


def cleanup_leftovers(base=None):
    """Safety net: undoes every mount/daemon this process still has registered, and every
    mount below base. Returns the mount points it had to clean."""
    found = []
    for mnt, proc in list(_ACTIVE.items()):
        found.append(mnt)
        unmount(mnt, fuse=proc is not None)
        if proc is not None:
            reap(proc)
        _ACTIVE.pop(mnt, None)
    if base is not None:
        for mnt, fstype in mounts_under(base):
            found.append(mnt)
            unmount(mnt, fuse=fstype.startswith("fuse"))
    return found


# --------------------------------------------------------------------------- snapshots

def _type_name(st):
    m = st.st_mode
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chr"), (stat.S_ISBLK, "blk"),
                       (stat.S_ISSOCK, "sock")):
        if test(m):
            return name
    return f"unknown({m:o})"


def _xattrs(path, overlay_xattrs):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return ()
        raise
    out = []
    for name in sorted(names):
        if not overlay_xattrs and name.startswith(OVL_XATTR_PREFIXES):
            continue
        try:
            out.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError as e:  # listed but unreadable: record the error, it is a finding too
            out.append((name, f"<{_errname(e)}>"))
    return tuple(out)


def _errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _record(path, st, entry, overlay_xattrs, dir_nlink, mtime, upper):
    kind = _type_name(st)
    if upper and kind == "chr" and st.st_rdev == 0:
        return {"type": "whiteout"}
    rec = {"type": kind, "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid,
           "gid": st.st_gid}
    if kind in ("file", "symlink"):
        rec["size"] = st.st_size
    try:
        if kind == "file":
            rec["sha256"] = _sha256(path)
        elif kind == "symlink":
            rec["target"] = os.readlink(path)
    except OSError as e:
        rec["read_error"] = _errname(e)
    if kind in ("chr", "blk"):
        rec["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    if kind != "dir" or dir_nlink:
        rec["nlink"] = st.st_nlink
    if mtime:
        rec["mtime_ns"] = st.st_mtime_ns
    rec["xattrs"] = _xattrs(path, overlay_xattrs)
    if upper and kind == "dir":
        try:
            rec["opaque"] = os.getxattr(path, OPAQUE)
        except OSError as e:
            if e.errno != errno.ENODATA:
                raise
    if entry is not None:
        # d_type from readdir must agree with lstat (Python falls back to lstat on DT_UNKNOWN).
        dkind = ("dir" if entry.is_dir(follow_symlinks=False) else
                 "symlink" if entry.is_symlink() else
                 "file" if entry.is_file(follow_symlinks=False) else "other")
        skind = kind if kind in ("dir", "symlink", "file") else "other"
        if dkind != skind:
            rec["d_type_mismatch"] = f"readdir says {dkind}, lstat says {kind}"
    return rec


def snapshot(root, *, overlay_xattrs=False, dir_nlink=True, mtime=True, upper=False):
    """dict relpath ('.' for root) -> record of type, mode, uid, gid, size (files, symlinks),
    sha256 (files), target (symlinks), rdev (devices), nlink (non-directories; directories too
    when dir_nlink), mtime_ns (when mtime), sorted xattrs. Overlay-private xattrs
    (trusted.overlay.*, user.overlay.*) are skipped unless overlay_xattrs: use
    overlay_xattrs=True on a mount, where every listed name is the user's.
    With upper=True whiteouts (char 0/0) become {'type': 'whiteout'} and directories get
    'opaque' (value of trusted.overlay.opaque). Never follows symlinks."""
    root = os.fspath(root)
    kw = dict(overlay_xattrs=overlay_xattrs, dir_nlink=dir_nlink, mtime=mtime, upper=upper)
    snap = {".": _record(root, os.lstat(root), None, **kw)}

    def walk(dirpath, rel):
        with os.scandir(dirpath) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            erel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:  # listed but not there: a finding, keep walking
                snap[erel] = {"lstat_error": _errname(e)}
                continue
            snap[erel] = _record(entry.path, st, entry, **kw)
            if stat.S_ISDIR(st.st_mode):
                walk(entry.path, erel)

    walk(root, "")
    return snap


def snapshot_upper(upper_dir, *, mtime=False):
    """Snapshot of an upper layer for write-side tests: whiteouts shown as type 'whiteout',
    directories carry 'opaque'; other overlay xattrs (origin, impure, uuid...) are ignored.
    Directory nlink and (by default) mtimes are left out: copy-up changes them legitimately."""
    return snapshot(upper_dir, upper=True, dir_nlink=False, mtime=mtime)


def diff_snapshots(a, b, names=("a", "b"), limit=60):
    """Readable list of differences between two snapshots (empty when equal)."""
    lines = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            lines.append(f"{path!r}: only in {names[0]}: {a[path]}")
        elif path not in a:
            lines.append(f"{path!r}: only in {names[1]}: {b[path]}")
        elif a[path] != b[path]:
            for key in sorted(set(a[path]) | set(b[path])):
                va, vb = a[path].get(key, "<absent>"), b[path].get(key, "<absent>")
                if va != vb:
                    lines.append(f"{path!r}: {key}: {names[0]}={va!r} {names[1]}={vb!r}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more differences"]
    return lines


def assert_same_tree(a, b, names=("kernel", "ovlfs")):
    lines = diff_snapshots(a, b, names)
    if lines:
        pytest.fail(f"trees differ ({len(a)} vs {len(b)} entries):\n" + "\n".join(lines),
                    pytrace=False)


def expect_errno(code, fn, *args, **kw):
    """Calls fn and asserts that it fails with errno code."""
    try:
        fn(*args, **kw)
    except OSError as e:
        assert e.errno == code, (f"{fn.__name__}{args}: expected {errno.errorcode[code]}, "
                                 f"got {errno.errorcode.get(e.errno, e.errno)} ({e})")
    else:
        raise AssertionError(f"{fn.__name__}{args}: expected {errno.errorcode[code]}, succeeded")


if __name__ == "__main__":  # tiny debugging aid: python3 tests/helpers.py DIR
    import pprint
    pprint.pprint(snapshot(sys.argv[1], upper="--upper" in sys.argv))
