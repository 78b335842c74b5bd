"""Concurrency: several processes hammer one ovlfs mount (create, unlink, rename of files
and of lower/merged directories, mkdir/rmdir, readdir, stat, reads, copy-up by write, chmod
and setxattr, link, symlink) on a small set of shared names, a fixed number of operations
each (fixed seeds). Then:
  * no worker saw an unexpected error (ENOENT/EEXIST/ENOTEMPTY/... races are expected; EIO,
    ENOTCONN, ESTALE, ... are not), the daemon did not crash (it exits 0 at unmount: under
    `make check`'s second pass it is the AddressSanitizer/UBSan build, which exits non-zero
    on a report);
  * the tree is consistent: every entry readdir lists can be looked up (lstat), its type
    agrees with d_type and its st_ino with d_ino, no name is listed twice, every name of the
    namespace readdir does not list fails lookup with ENOENT, files read to their size,
    symlinks read;
  * after unmount <workdir>/work is empty; a fresh ovlfs mount shows the same tree (what
    the caches showed is what is on disk), and so does the kernel overlayfs over the same
    layers.
A watchdog fails the test instead of hanging: past DEADLINE it kills this test's ovlfs
daemon (every stuck call then fails with ENOTCONN) and then its worker processes, by pid."""
import errno
import json
import multiprocessing
import os
import random
import signal
import stat
import time

import pytest

from helpers import (_why_no_kernel_overlay, build_layers, diff_snapshots, mount_kernel,
                     needs_fuse, snapshot)
from write_helpers import KERNEL_OPTS, work_leftovers

pytestmark = [needs_fuse]

WORKERS = 4
OPS = int(os.environ.get("STRESS_OPS", "1500"))  # per worker
DEADLINE = 180.0  # seconds for all workers together
DIRS = ("d0", "d1", "d2")
FILES = tuple(f"f{i}" for i in range(6))
SUBS = ("s0", "s1", "s2")
TOLERATED = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR,
             errno.EINVAL, errno.ELOOP}  # (ELOOP: a symlink renamed onto its own target)
LINKS = ("l0", "l1", "y0", "y1")
# Known ovlfs races, (op, errno) -> bug: counted and printed, not failed on here, each with
# its own reproduction test while open.
KNOWN_RACES = {}  # none open; C1 (chmod racing unlink+create: ENODATA) fixed, see below


def _lower():
    """Lower layer: merged directories full of lower files, and lower directory trees for
    concurrent directory copy-ups."""
    tree = {}
    for d in DIRS:
        tree[d] = {f: f"{d}/{f} lower ".encode() * 50 for f in FILES[:4]}
        tree[d]["s0"] = {"x": "x", "y": {"z": "z"}}
    tree["m"] = {s: {"a": "a" * 3000, "b": {"c": "c"}} for s in SUBS}
    return tree


def _upper():
    return {d: {FILES[4]: f"{d} upper"} for d in DIRS}


def _names():
    """Every path the workers may create: the negative-lookup check tries them all."""
    out = set(DIRS) | {"m"} | {f"m/{s}" for s in SUBS + ("t0", "t1", "t2")}
    for d in DIRS:
        for n in FILES + SUBS + ("l0", "l1", "y0", "y1"):
            out.add(f"{d}/{n}")
    return sorted(out)


def _worker(root, seed, ops, out_path):
    rng = random.Random(seed)
    counts, unexpected = {}, []

    def path(*parts):
        return os.path.join(root, *parts)

    def rfile():
        return path(rng.choice(DIRS), rng.choice(FILES))

    def rname():  # files and the names link/symlink make
        return path(rng.choice(DIRS), rng.choice(FILES + LINKS))

    for i in range(ops):
        r = rng.random()
        try:
            if r < 0.12:
                op = "create"
                with open(rfile(), "wb") as f:
                    f.write(b"w%d-%d " % (seed, i) * rng.randint(1, 200))
            elif r < 0.22:
                op = "write"  # copy-up of a shared lower file
                fd = os.open(rfile(), os.O_WRONLY)
                try:
                    os.pwrite(fd, b"W%d" % seed, rng.randint(0, 500))
                finally:
                    os.close(fd)
            elif r < 0.32:
                op = "read"
                with open(rfile(), "rb") as f:
                    f.read()
            elif r < 0.40:
                op = "unlink"
                os.unlink(rname())
            elif r < 0.50:
                op = "rename"
                os.rename(rname(), rname())
            elif r < 0.55:
                op = "rename-dir"  # lower/merged directories: ovlfs copies them up first
                a, b = rng.sample(DIRS, 2)
                src = path(a, rng.choice(SUBS))
                dst = path(b, rng.choice(SUBS)) if rng.random() < 0.6 else \
                    path("m", rng.choice(("t0", "t1", "t2", "s0", "s1", "s2")))
                if rng.random() < 0.3:
                    src = path("m", rng.choice(SUBS + ("t0", "t1", "t2")))
                os.rename(src, dst)
            elif r < 0.60:
                op = "mkdir"
                os.mkdir(path(rng.choice(DIRS), rng.choice(SUBS)))
            elif r < 0.64:
                op = "rmdir"
                os.rmdir(path(rng.choice(DIRS), rng.choice(SUBS)))
            elif r < 0.74:
                op = "readdir"
                os.listdir(path(rng.choice(DIRS + ("m",))))
            elif r < 0.82:
                op = "stat"
                os.lstat(path(rng.choice(DIRS), rng.choice(FILES + SUBS + LINKS)))
            elif r < 0.86:
                op = "chmod"
                os.chmod(rfile(), rng.choice((0o600, 0o644, 0o640)))
            elif r < 0.90:
                op = "setxattr"
                os.setxattr(rfile(), "user.s", b"%d" % i)
            elif r < 0.95:
                op = "link"
                os.link(rfile(), path(rng.choice(DIRS), rng.choice(LINKS[:2])))
            else:
                op = "symlink"
                os.symlink("f0", path(rng.choice(DIRS), rng.choice(LINKS[2:])))
            counts[op] = counts.get(op, 0) + 1
        except OSError as e:
            counts[op + ":" + errno.errorcode.get(e.errno, str(e.errno))] = \
                counts.get(op + ":" + errno.errorcode.get(e.errno, str(e.errno)), 0) + 1
            if e.errno not in TOLERATED and (op, e.errno) not in KNOWN_RACES:
                unexpected.append(f"op {i} {op}: {e}")
                if len(unexpected) > 20:
                    break
    with open(out_path, "w") as f:
        json.dump({"counts": counts, "unexpected": unexpected}, f)
    os._exit(1 if unexpected else 0)


def _run_workers(mnt, tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = []
    for w in range(WORKERS):
        out = tmp_path / f"worker{w}.json"
        p = ctx.Process(target=_worker, args=(str(mnt), 1000 + w, OPS, str(out)), daemon=True)
        p.start()
        procs.append((p, out))
    deadline = time.monotonic() + DEADLINE
    hung = False
    for p, _ in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            hung = True
    if hung:
        # Watchdog: kill this mount's daemon first (stuck FUSE calls then fail), then any
        # worker still alive, each by its own pid.
        if mnt.proc.poll() is None:
            mnt.proc.kill()
        for p, _ in procs:
            p.join(5)
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
                p.join(5)
        pytest.fail(f"workers did not finish within {DEADLINE}s: deadlock or hang in ovlfs "
                    f"(daemon killed)\n{mnt.log()[-3000:]}")
    reports = []
    for w, (p, out) in enumerate(procs):
        rep = json.loads(out.read_text()) if out.exists() else {"unexpected": ["no report"]}
        reports.append(rep)
        assert p.exitcode == 0 or rep["unexpected"], f"worker {w} died: exit {p.exitcode}"
    bad = [f"worker {w}: {u}" for w, rep in enumerate(reports) for u in rep["unexpected"]]
    assert not bad, "unexpected errors:\n" + "\n".join(bad[:40])
    return reports


def _dtype(entry):
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    if entry.is_file(follow_symlinks=False):
        return "file"
    return "other"


def _stype(st):
    m = st.st_mode
    return ("dir" if stat.S_ISDIR(m) else "symlink" if stat.S_ISLNK(m)
            else "file" if stat.S_ISREG(m) else "other")


def check_consistency(root):
    """readdir, lookup and stat agree everywhere; returns the problems found."""
    problems, listed = [], set()
    root = str(root)

    def walk(d, rel):
        with os.scandir(d) as it:
            entries = list(it)
        names = [e.name for e in entries]
        if len(names) != len(set(names)):
            problems.append(f"{rel or '.'}: readdir lists a name twice: {sorted(names)}")
        for e in entries:
            erel = f"{rel}/{e.name}" if rel else e.name
            listed.add(erel)
            try:
                st = os.lstat(e.path)
            except OSError as err:
                problems.append(f"{erel}: listed by readdir, lstat fails: {err}")
                continue
            if _dtype(e) != _stype(st):
                problems.append(f"{erel}: d_type {_dtype(e)}, lstat {_stype(st)}")
            if e.inode() != st.st_ino:
                problems.append(f"{erel}: d_ino {e.inode()} != st_ino {st.st_ino}")
            if stat.S_ISREG(st.st_mode):
                with open(e.path, "rb") as f:
                    n = len(f.read())
                if n != st.st_size:
                    problems.append(f"{erel}: read {n} bytes, st_size {st.st_size}")
                if st.st_nlink < 1:
                    problems.append(f"{erel}: nlink {st.st_nlink}")
            elif stat.S_ISLNK(st.st_mode):
                os.readlink(e.path)
            elif stat.S_ISDIR(st.st_mode):
                walk(e.path, erel)

    walk(root, "")
    for name in _names():
        if name in listed:
            continue
        try:
            os.lstat(os.path.join(root, name))
            problems.append(f"{name}: lookup finds it, readdir of its parent does not list it")
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            pass
    return problems


def _stable(snap):
    """Snapshot records to compare across mounts: everything but directory mtimes (a
    directory's mtime may legitimately be restored by copy-up on one side only)."""
    return {p: {k: v for k, v in r.items() if not (k == "mtime_ns" and r.get("type") == "dir")}
            for p, r in snap.items()}


@pytest.mark.parametrize("round_", [1, 2])
def test_stress(tmp_path, round_):
    ls = build_layers(tmp_path / "layers", [_lower()], _upper())
    with ls.ovlfs() as mnt:
        reports = _run_workers(mnt, tmp_path)
        problems = check_consistency(mnt)
        assert not problems, "inconsistent tree after the stress:\n" + "\n".join(problems[:40])
        seen = _stable(snapshot(mnt, overlay_xattrs=True))
    left = work_leftovers(ls.work)
    assert not left, f"stray entries in {ls.work}/work after unmount: {left}"
    with ls.ovlfs() as mnt:  # fresh caches: the disk says the same
        again = _stable(snapshot(mnt, overlay_xattrs=True))
        assert not check_consistency(mnt)
    lines = diff_snapshots(seen, again, ("before remount", "after remount"))
    assert not lines, "the remounted tree differs:\n" + "\n".join(lines)
    total = {}
    for rep in reports:
        for k, v in rep["counts"].items():
            total[k] = total.get(k, 0) + v
    print(f"stress round {round_}: {WORKERS}x{OPS} ops: {dict(sorted(total.items()))}")
    for (op, code), bug in KNOWN_RACES.items():
        n = total.get(f"{op}:{errno.errorcode[code]}", 0)
        if n:
            print(f"known race seen {n} times: {bug}")
    assert sum(v for k, v in total.items() if ":" not in k) > WORKERS * OPS // 4, \
        "too few operations succeeded to mean anything"
    _compare_with_kernel(ls, seen, tmp_path)


def _compare_with_kernel(ls, seen, tmp_path):
    """The kernel overlayfs reads the layers ovlfs wrote the same way (its own work dir)."""
    if _why_no_kernel_overlay() is not None:
        return
    work = tmp_path / "kwork"
    work.mkdir()
    with mount_kernel(ls.lowers, ls.upper, work, KERNEL_OPTS, tmp_path / "kmnt") as kmnt:
        kview = _stable(snapshot(kmnt, overlay_xattrs=True))
    lines = diff_snapshots(kview, seen, ("kernel", "ovlfs"))
    assert not lines, "the kernel overlayfs sees the layers differently:\n" + "\n".join(lines)


def _race_worker(root, seed, ops, out_path):
    """chmod, unlink and create of the same few upper files."""
    rng = random.Random(seed)
    bad = []
    for i in range(ops):
        p = os.path.join(root, f"f{rng.randrange(4)}")
        op = rng.choice(("chmod", "unlink", "create"))
        try:
            if op == "chmod":
                os.chmod(p, rng.choice((0o600, 0o644)))
            elif op == "unlink":
                os.unlink(p)
            else:
                open(p, "wb").close()
        except OSError as e:
            if e.errno != errno.ENOENT:
                bad.append(f"op {i} {op}: {e}")
    with open(out_path, "w") as f:
        json.dump({"counts": {}, "unexpected": bad}, f)
    os._exit(1 if bad else 0)


def test_race_chmod_unlink_create(tmp_path):
    """Regression for C1: chmod of a name being unlinked and re-created answered ENODATA
    (a stale errno, when the node was unlinked and no file was open); now 0 or ENOENT."""
    ls = build_layers(tmp_path / "layers", [{"z": "z"}], {f"f{i}": "x" * 100 for i in range(4)})
    with ls.ovlfs() as mnt:
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_race_worker, args=(str(mnt), s, 3000,
                                                        str(tmp_path / f"r{s}.json")))
                 for s in range(4)]
        for p in procs:
            p.start()
        deadline = time.monotonic() + DEADLINE
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        alive = [p for p in procs if p.is_alive()]
        if alive:
            mnt.proc.kill()
            for p in alive:
                os.kill(p.pid, signal.SIGKILL)
                p.join(5)
            pytest.fail("race workers hung")
        bad = [u for s in range(4) for u in json.loads((tmp_path / f"r{s}.json").read_text())
               ["unexpected"]]
        assert not bad, "\n".join(bad[:10])
        assert not check_consistency(mnt)
