"""Crash safety: kill -9 the ovlfs daemon during heavy work, remount, check the layers.

One set of lower layers (large files with a known pattern, many small files, plain and merged
directories) is built once; every round gets a fresh upper and work directory. A workload
process appends to the large files (64 MiB copy-ups), rewrites small lower files in place,
creates files, renames lower files and lower directories and empties and removes merged
directories through the mount, logging each operation once it has returned. The daemon is
killed with SIGKILL after a seeded random delay, the dead mount is detached, ovlfs is mounted
again on the same layers, and then:

* every entry stats and readdir agrees with lookup (names and types);
* every file has its old complete content or its new complete content; a copied-up large file
  is the whole lower content plus whole appended chunks, never a truncated prefix;
* whatever the log says was done is there, and nothing deleted reappears;
* <workdir>/work is empty after the remount;
* the kernel overlayfs mounts the same layers and shows the same tree as ovlfs.

OVLFS_CRASH_SEED picks another sequence of kill points.
"""
import errno
import hashlib
import json
import os
import random
import subprocess
import sys
import time

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

SEED = int(os.environ.get("OVLFS_CRASH_SEED", "20240605"))
ROUNDS = 8
BIG = 3
BIG_SIZE = 64 << 20
CHUNK = 4096
SMALL = 120
RENAMES = 40
DIRS = 8
MERGED = 12
SMALL_LEN = 64


def big_block(i, n):
    return (f"big{i}:{n:08d};".encode() * (CHUNK // 8))[:CHUNK]


def big_content(i):
    return b"".join(big_block(i, n) for n in range(BIG_SIZE // CHUNK))


def chunk(i, k):
    return (f"APPEND{i}:{k:06d}|".encode() * (CHUNK // 8))[:CHUNK]


def small(kind, n):
    return f"{kind}-{n:04d}-".encode().ljust(SMALL_LEN, b".")


def created(n):
    return f"created file {n}\n".encode() * 3


def dir_child(j, k):
    return f"dir {j} child {k}\n".encode()


def lower_specs():
    top = {
        "s": {f"s{n:04d}": small("old", n) for n in range(SMALL)},
        "r": {f"r{n:04d}": small("ren", n) for n in range(RENAMES)},
        "d": {f"d{j:02d}": {f"k{k}": dir_child(j, k) for k in range(4)} for j in range(DIRS)},
        "m": {f"m{j:02d}": {f"a{k}": f"upper-lower {j} {k}\n" for k in range(3)}
              for j in range(MERGED)},
        "c": {},
    }
    bottom = {
        "m": {f"m{j:02d}": {f"b{k}": f"lower-lower {j} {k}\n" for k in range(3)}
              for j in range(MERGED)},
    }
    return top, bottom


# The workload: one JSON line per operation that returned; stops at the first error
# (ENOTCONN once the daemon is dead).
WORKLOAD = r"""
import json, os, sys
mnt, logpath = sys.argv[1], sys.argv[2]
BIG, CHUNK, SMALL, RENAMES, DIRS, MERGED, SMALL_LEN = (int(a) for a in sys.argv[3:10])
log = os.open(logpath, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
P = lambda p: os.path.join(mnt, p)
def done(*rec):
    os.write(log, (json.dumps(rec) + "\n").encode())
def chunk(i, k):
    return (f"APPEND{i}:{k:06d}|".encode() * (CHUNK // 8))[:CHUNK]
appended = [0] * BIG
try:
    for step in range(SMALL):
        if step % 8 == 0:
            i = (step // 8) % BIG
            fd = os.open(P(f"big/b{i}"), os.O_WRONLY | os.O_APPEND)
            try:
                assert os.write(fd, chunk(i, appended[i])) == CHUNK
            finally:
                os.close(fd)
            done("append", i, appended[i])
            appended[i] += 1
        fd = os.open(P(f"s/s{step:04d}"), os.O_WRONLY)
        try:
            os.pwrite(fd, f"new-{step:04d}-".encode().ljust(SMALL_LEN, b"."), 0)
        finally:
            os.close(fd)
        done("rewrite", step)
        fd = os.open(P(f"c/c{step:04d}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, f"created file {step}\n".encode() * 3)
        finally:
            os.close(fd)
        done("create", step)
        if step < RENAMES:
            os.rename(P(f"r/r{step:04d}"), P(f"r/r{step:04d}.moved"))
            done("rename", step)
        if step % 5 == 2 and step // 5 < DIRS:
            j = step // 5
            try:
                os.rename(P(f"d/d{j:02d}"), P(f"d/d{j:02d}.moved"))
                done("dirrename", j)
            except OSError as e:
                if e.errno != 18:  # EXDEV: a lower directory may not be renamed
                    raise
                done("dirrename-exdev", j)
        if step % 5 == 4 and step // 5 < MERGED:
            j = step // 5
            for name in sorted(os.listdir(P(f"m/m{j:02d}"))):
                os.unlink(P(f"m/m{j:02d}/{name}"))
                done("unlink", j, name)
            os.rmdir(P(f"m/m{j:02d}"))
            done("rmdir", j)
    done("end")
except OSError as e:
    done("error", e.errno)
"""


def workload_args(mnt, logpath):
    return [sys.executable, "-c", WORKLOAD, str(mnt), str(logpath),
            *(str(v) for v in (BIG, CHUNK, SMALL, RENAMES, DIRS, MERGED, SMALL_LEN))]


def read_log(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


class Checker:
    def __init__(self, mnt):
        self.mnt = mnt
        self.problems = []

    def bad(self, msg):
        self.problems.append(msg)

    def exists(self, rel):
        """Lookup and readdir of the parent must agree; returns whether rel exists."""
        parent, name = os.path.split(rel)
        listed = name in os.listdir(self.mnt / parent)
        try:
            os.lstat(self.mnt / rel)
            found = True
        except FileNotFoundError:
            found = False
        if listed != found:
            self.bad(f"{rel}: readdir says {'present' if listed else 'absent'}, "
                     f"lookup says {'present' if found else 'absent'}")
        return found

    def content(self, rel):
        return helpers_read(self.mnt / rel)


def helpers_read(path):
    with open(path, "rb") as f:
        return f.read()


def check_walk(mnt, chk):
    """Every listed entry stats, with the type readdir gave."""
    for dirpath, _dirs, _files in os.walk(mnt):
        with os.scandir(dirpath) as it:
            for e in it:
                try:
                    st = os.lstat(e.path)
                except OSError as err:
                    chk.bad(f"{e.path}: listed but lstat fails: {err}")
                    continue
                if e.is_dir(follow_symlinks=False) != os.path.stat.S_ISDIR(st.st_mode):
                    chk.bad(f"{e.path}: readdir type and lstat type differ")


def check_state(mnt, log, lower_big_sha):
    chk = Checker(mnt)
    check_walk(mnt, chk)
    ops = {tuple(r) for r in log}
    appended = [0] * BIG
    for r in log:
        if r[0] == "append":
            appended[r[1]] = max(appended[r[1]], r[2] + 1)
    for i in range(BIG):
        data = chk.content(f"big/b{i}")
        head, tail = data[:BIG_SIZE], data[BIG_SIZE:]
        if len(head) < BIG_SIZE or hashlib.sha256(head).hexdigest() != lower_big_sha[i]:
            chk.bad(f"big/b{i}: size {len(data)}: lower content not intact (truncated/mixed)")
            continue
        if len(tail) % CHUNK:
            chk.bad(f"big/b{i}: {len(tail)} appended bytes are not whole chunks")
        n = len(tail) // CHUNK
        for k in range(n):
            if tail[k * CHUNK:(k + 1) * CHUNK] != chunk(i, k):
                chk.bad(f"big/b{i}: appended chunk {k} is wrong")
                break
        if n < appended[i] or n > appended[i] + 1:
            chk.bad(f"big/b{i}: {n} chunks, log says {appended[i]} appends returned")
    for n in range(SMALL):
        rel = f"s/s{n:04d}"
        if not chk.exists(rel):
            chk.bad(f"{rel}: lost")
            continue
        data = chk.content(rel)
        new = f"new-{n:04d}-".encode().ljust(SMALL_LEN, b".")
        if ("rewrite", n) in ops:
            if data != new:
                chk.bad(f"{rel}: rewrite returned but content is {data!r}")
        elif data not in (small("old", n), new):
            chk.bad(f"{rel}: neither old nor new content: {data!r}")
        rel = f"c/c{n:04d}"
        if chk.exists(rel):
            data = chk.content(rel)
            if data != created(n) and (("create", n) in ops or data != b""):
                chk.bad(f"{rel}: content {data!r}")
        elif ("create", n) in ops:
            chk.bad(f"{rel}: create returned but the file is missing")
    for n in range(RENAMES):
        old, new = f"r/r{n:04d}", f"r/r{n:04d}.moved"
        there = [p for p in (old, new) if chk.exists(p)]
        if len(there) != 1:
            chk.bad(f"rename {old}: present under {there}")
        elif ("rename", n) in ops and there != [new]:
            chk.bad(f"rename {old} returned but the file is at {there}")
        for p in there:
            if chk.content(p) != small("ren", n):
                chk.bad(f"{p}: wrong content")
    for j in range(DIRS):
        old, new = f"d/d{j:02d}", f"d/d{j:02d}.moved"
        there = [p for p in (old, new) if chk.exists(p)]
        if len(there) != 1:
            chk.bad(f"dir rename {old}: present under {there}")
            continue
        if ("dirrename", j) in ops and there != [new]:
            chk.bad(f"dir rename {old} returned but the dir is at {there}")
        if ("dirrename-exdev", j) in ops and there != [old]:
            chk.bad(f"dir rename {old} failed with EXDEV but the dir is at {there}")
        names = sorted(os.listdir(mnt / there[0]))
        if names != [f"k{k}" for k in range(4)]:
            chk.bad(f"{there[0]}: children {names}")
        else:
            for k in range(4):
                if chk.content(f"{there[0]}/k{k}") != dir_child(j, k):
                    chk.bad(f"{there[0]}/k{k}: wrong content")
    for j in range(MERGED):
        d = f"m/m{j:02d}"
        if not chk.exists(d):
            if ("rmdir", j) not in ops and not all(
                    ("unlink", j, f"{p}{k}") in ops for p in "ab" for k in range(3)):
                chk.bad(f"{d}: gone although not all its children were removed")
            continue
        if ("rmdir", j) in ops:
            chk.bad(f"{d}: rmdir returned but the directory reappeared")
        for p in "ab":
            for k in range(3):
                name = f"{p}{k}"
                if chk.exists(f"{d}/{name}"):
                    if ("unlink", j, name) in ops:
                        chk.bad(f"{d}/{name}: unlinked but reappeared")
                    want = f"{'upper' if p == 'a' else 'lower'}-lower {j} {k}\n".encode()
                    if chk.content(f"{d}/{name}") != want:
                        chk.bad(f"{d}/{name}: wrong content")
    return chk.problems


def snap(mnt):
    return helpers.snapshot(mnt, overlay_xattrs=True, dir_nlink=False)


@pytest.fixture(scope="module")
def lowers(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash-lowers")
    top, bottom = lower_specs()
    l0 = helpers.build_layer(base / "lower0", top)
    l1 = helpers.build_layer(base / "lower1", bottom)
    shas = []
    (l0 / "big").mkdir()
    for i in range(BIG):
        data = big_content(i)
        (l0 / "big" / f"b{i}").write_bytes(data)
        shas.append(hashlib.sha256(data).hexdigest())
    return [l0, l1], shas


def kill_points():
    rng = random.Random(SEED)
    # (operations the log must show first, then a short extra delay); 0 ops = during the
    # first 64 MiB copy-up. The full workload logs ~388 operations.
    return [(0 if n < 2 else rng.randrange(1, 380), round(rng.uniform(0.0, 0.03), 4))
            for n in range(ROUNDS)]


@pytest.mark.parametrize("round_no,point", list(enumerate(kill_points())))
def test_kill9_then_remount(tmp_path, lowers, round_no, point):
    low, shas = lowers
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    logpath = tmp_path / "ops.log"

    # 1. The daemon to kill: started by hand (the helpers' mount fails on a non-zero exit).
    cmd = helpers.ovlfs_command(low, upper, work, (), mnt)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    helpers._ACTIVE[str(mnt)] = proc
    worker = None
    try:
        helpers.wait_fuse_mount(mnt, proc)
        worker = subprocess.Popen(workload_args(mnt, logpath), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ops, delay = point
        deadline = time.monotonic() + 20
        while (not ops and worker.poll() is None and time.monotonic() < deadline
               and not wh.work_leftovers(work) and not (upper / "big").exists()):
            time.sleep(0.0005)  # 0 ops: wait until the first copy-up has begun
        while (ops and worker.poll() is None and time.monotonic() < deadline
               and len(read_log(logpath)) < ops):
            time.sleep(0.001)
        time.sleep(delay)
        proc.kill()  # SIGKILL to the daemon we started, and only to it
        proc.wait(helpers.EXIT_TIMEOUT)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            pytest.fail("the workload hung after the daemon was killed")
        try:
            os.stat(mnt / f"never-looked-up-{round_no}")  # not in any cache
            alive = None
        except OSError as e:
            alive = e.errno
        assert alive in helpers.DEAD_MOUNT_ERRNOS, f"dead mount answered {alive}, not ENOTCONN"
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        helpers.unmount(mnt, fuse=True)
        helpers._ACTIVE.pop(str(mnt), None)
    assert helpers.mount_fstype(mnt) is None, "the dead mount could not be detached"
    log = read_log(logpath)
    assert log, "the workload logged nothing"

    # 2. Remount on the same layers and check the merged view.
    with helpers.mount_ovlfs(low, upper, work, (), mnt) as m:
        leftovers = wh.work_leftovers(work)
        problems = check_state(m, log, shas)
        ovlfs_tree = snap(m)
    assert not leftovers, f"work dir not cleaned after remount: {leftovers}"
    assert not problems, (f"kill point {point}: {len(log)} ops logged "
                          f"(last {log[-1]}):\n" + "\n".join(problems))

    # 3. The kernel overlayfs accepts the upper layer and shows the same tree.
    with helpers.mount_kernel(low, upper, work, wh.KERNEL_OPTS, tmp_path / "kmnt") as k:
        kernel_tree = snap(k)
    helpers.assert_same_tree(kernel_tree, ovlfs_tree)
