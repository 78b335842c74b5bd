"""Soak: three workloads at once against ovlfs mounts for a given time, reporting errors and
each ovlfs daemon's memory (RSS) as it goes (`make soak SECONDS=N`).

    /usr/bin/python3 tests/soak.py [--seconds N] [--interval S] [--lanes stress,fsx,fuzz]

Lanes, each in its own process (the daemons it starts are its children):
  stress  test_stress.py's workers (4 processes of mixed namespace/data/xattr operations on a
          small shared namespace) round after round on ONE long-lived mount, a different seed
          per round; after each round test_stress.check_consistency on the live mount; at the
          end the daemon's exit status, an empty work/work, and the consistency check again
          on a fresh mount.
  fsx     tools/fsx.c (data integrity, copy-up in the middle of the run) on lower-layer files
          d/f0, d/f1, ... of one long-lived mount, a different file, seed and mode per round
          (test_fsx.py's layers and checks); a new mount once every file was used.
  fuzz    the differential fuzzer (tests/difffuzz: ovlfs against the kernel overlayfs), seed after
          seed; a divergence is an error (reproduce: make fuzz FUZZ_ARGS="--seed N --ops 150";
          --fuzz-exclude to look past a known one).
Every --interval seconds one line: elapsed, ops done and errors per lane, and the RSS (KiB)
of each live ovlfs daemon; at the end a summary with each daemon's first, last and largest
RSS. Exit status 1 if any lane reported an error, 0 otherwise."""
import argparse
import multiprocessing
import os
import pathlib
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
os.environ.setdefault("STRESS_OPS", "400")  # per worker and round (read at import)

import pytest  # noqa: E402  (pytest.fail raises Failed, not an Exception)

import helpers  # noqa: E402
import test_fsx  # noqa: E402
import test_stress  # noqa: E402
from write_helpers import work_leftovers  # noqa: E402

FAILURES = (Exception, pytest.fail.Exception)
LANES = ("stress", "fsx", "fuzz")
FSX_FILES = 40  # lower files per fsx mount, one per round
FSX_OPS = 3000
FUZZ_STEPS = 150


def _short(text, n=3000):
    text = str(text)
    return text if len(text) <= n else text[:n] + f"\n... ({len(text)} chars)"


class Lane:
    """What a lane process reports to the parent."""

    def __init__(self, name, q, stop_at):
        self.name, self.q, self.stop_at = name, q, stop_at

    def time_left(self):
        return time.monotonic() < self.stop_at

    def ops(self, n):
        self.q.put(("ops", self.name, n))

    def error(self, msg):
        self.q.put(("error", self.name, _short(msg)))


# ------------------------------------------------------------------------------- stress

def lane_stress(lane, scratch):
    """Rounds of test_stress's workers on one mount, a new seed per round."""
    orig_worker = test_stress._worker
    rnd = [0]

    def worker(root, seed, ops, out_path):  # _run_workers passes 1000+w every time
        orig_worker(root, seed + 100 * rnd[0], ops, out_path)

    test_stress._worker = worker
    ls = helpers.build_layers(scratch / "layers", [test_stress._lower()], test_stress._upper())
    try:
        with ls.ovlfs() as mnt:
            while lane.time_left():
                rnd[0] += 1
                try:
                    reports = test_stress._run_workers(mnt, scratch)
                except FAILURES as e:
                    lane.error(f"round {rnd[0]}: {e}")
                    break
                lane.ops(sum(v for rep in reports for v in rep["counts"].values()))
                problems = test_stress.check_consistency(mnt)
                if problems:
                    lane.error(f"round {rnd[0]}: inconsistent tree:\n" + "\n".join(problems[:30]))
                    break
    except FAILURES as e:  # the daemon exited non-zero at unmount, or did not mount
        lane.error(f"mount: {e}")
        return
    left = work_leftovers(ls.work)
    if left:
        lane.error(f"entries left in work/work after unmount: {left}")
    with ls.ovlfs() as mnt:
        problems = test_stress.check_consistency(mnt)
        if problems:
            lane.error("inconsistent tree after remount:\n" + "\n".join(problems[:30]))


# ------------------------------------------------------------------------------- fsx

def _fsx_round(lane, ls, mnt, i, rnd):
    """fsx on lower file d/f<i>: copied up during the run, checked by fsx (-u, -R)."""
    flags = (("",), ("-2",), ("-M", "-o", "5000"))[rnd % 3]
    name = f"f{i}"
    cmd = [str(test_fsx.fsx_binary()), "-N", str(FSX_OPS), "-S", str(rnd), "-l",
           str(test_fsx.MAXLEN), "-u", str(ls.upper / "d" / name), "-R",
           str(ls.lowers[1] / "d" / name), *[f for f in flags if f], str(mnt / "d" / name)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=test_fsx.TIMEOUT)
    except subprocess.TimeoutExpired:
        lane.error(f"fsx round {rnd} did not finish in {test_fsx.TIMEOUT}s: {' '.join(cmd)}")
        return False
    if r.returncode != 0 or f"{FSX_OPS} ops OK" not in r.stdout:
        lane.error(f"fsx round {rnd}: exit {r.returncode}: {' '.join(cmd)}\n"
                   f"{r.stdout[-1500:]}{r.stderr[-1500:]}")
        return False
    lane.ops(FSX_OPS)
    return True


def lane_fsx(lane, scratch):
    content = test_fsx._content()
    rnd = mount_no = 0
    while lane.time_left():
        mount_no += 1
        base = scratch / f"m{mount_no}"
        ls = helpers.build_layers(base, [{"d": {"other": "x"}},
                                         {"d": {f"f{i}": content for i in range(FSX_FILES)}}])
        ok = True
        try:
            with ls.ovlfs() as mnt:
                for i in range(FSX_FILES):
                    if not lane.time_left():
                        break
                    rnd += 1
                    ok = _fsx_round(lane, ls, mnt, i, rnd)
                    if not ok:
                        break
        except FAILURES as e:
            lane.error(f"mount {mount_no}: {e}")
            return
        if not ok:
            return
        left = work_leftovers(ls.work)
        if left:
            lane.error(f"mount {mount_no}: entries left in work/work: {left}")
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------- fuzz

def lane_fuzz(lane, scratch, exclude):
    from difffuzz import gen_layers, run_generated  # the package lives in tests/

    why = helpers._why_no_kernel_overlay()
    if why is not None:
        print(f"soak: fuzz lane skipped: {why}", flush=True)
        return
    seed = int(time.time()) % 1_000_000 * 1000
    while lane.time_left():
        seed += 1
        base = scratch / f"seed{seed}"
        try:
            lowers, upper = gen_layers(seed)
            steps, div, _ = run_generated(base, seed, lowers, upper, FUZZ_STEPS, 25, exclude)
        except FAILURES as e:
            lane.error(f"seed {seed}: {e}")
            return
        finally:
            shutil.rmtree(base, ignore_errors=True)
        lane.ops(len(steps))
        if div is not None:
            lane.error(f"seed {seed} diverged (make fuzz FUZZ_ARGS=\"--seed {seed}\"): {div}")


# ------------------------------------------------------------------------------- parent

def _lane_main(name, q, stop_at, scratch, fuzz_exclude):
    lane = Lane(name, q, stop_at)
    scratch = pathlib.Path(scratch) / name
    scratch.mkdir()
    try:
        if name == "fuzz":
            lane_fuzz(lane, scratch, fuzz_exclude)
        else:
            {"stress": lane_stress, "fsx": lane_fsx}[name](lane, scratch)
    except BaseException:  # noqa: B902  (reported, then this lane ends)
        lane.error(traceback.format_exc())
    finally:
        left = helpers.cleanup_leftovers(scratch)
        if left:
            lane.error(f"mounts left behind: {left}")
        q.put(("done", name, None))


def _daemons(lane_pids):
    """{pid: lane} of the ovlfs processes whose parent is a lane process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.index("(") + 1:s.rindex(")")]
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        if comm == "ovlfs" and ppid in lane_pids:
            out[int(d)] = lane_pids[ppid]
    return out


def _rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--interval", type=float, default=10, help="seconds between report lines")
    ap.add_argument("--lanes", default=",".join(LANES))
    ap.add_argument("--fuzz-exclude", default="",
                    help="comma-separated ops the fuzz lane does not generate (to look past "
                    "a known divergence, e.g. link for the open bug B4 of test_fuzz.py)")
    ap.add_argument("--grace", type=float, default=300,
                    help="seconds a lane may take to finish its round after the end")
    args = ap.parse_args(argv)
    lanes = [x for x in args.lanes.split(",") if x]
    if os.geteuid() != 0 or any(x not in LANES for x in lanes):
        print("soak: needs root, lanes among " + ",".join(LANES), file=sys.stderr)
        return 2
    if not os.access(helpers.ovlfs_binary(), os.X_OK):
        print(f"soak: no ovlfs binary at {helpers.ovlfs_binary()}", file=sys.stderr)
        return 2

    scratch = pathlib.Path(tempfile.mkdtemp(prefix="ovlfs-soak-"))
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    start = time.monotonic()
    stop_at = start + args.seconds
    procs = {}
    exclude = tuple(x for x in args.fuzz_exclude.split(",") if x)
    for name in lanes:
        p = ctx.Process(target=_lane_main, args=(name, q, stop_at, str(scratch), exclude))
        p.start()
        procs[name] = p
    ops = {n: 0 for n in lanes}
    errors = {n: 0 for n in lanes}
    rss = {}  # pid -> [lane, first, last, max, first seen, last seen]
    done = set()
    print(f"soak: {args.seconds:.0f}s, lanes {', '.join(lanes)}, ovlfs "
          f"{helpers.ovlfs_binary()}, scratch {scratch}", flush=True)
    next_report = start + args.interval
    hard_stop = stop_at + args.grace
    while len(done) < len(lanes) and time.monotonic() < hard_stop:
        try:
            kind, name, val = q.get(timeout=0.5)
            if kind == "ops":
                ops[name] += val
            elif kind == "error":
                errors[name] += 1
                print(f"soak: ERROR in {name}: {val}", flush=True)
            else:
                done.add(name)
        except queue.Empty:
            pass
        now = time.monotonic()
        if now < next_report and len(done) < len(lanes):
            continue
        next_report = now + args.interval
        daemons = _daemons({p.pid: n for n, p in procs.items()})
        parts = []
        for pid, name in sorted(daemons.items(), key=lambda x: x[1]):
            kib = _rss_kib(pid)
            if kib is None:
                continue
            r = rss.setdefault(pid, [name, kib, kib, kib, now - start, now - start])
            r[2], r[3], r[5] = kib, max(r[3], kib), now - start
            parts.append(f"{name}[{pid}] {kib}")
        print(f"[{now - start:6.0f}s] ops " + " ".join(f"{n} {ops[n]}" for n in lanes) +
              f" | errors {sum(errors.values())} | RSS KiB " + (", ".join(parts) or "-"),
              flush=True)

    for name, p in procs.items():
        p.join(5)
        if p.is_alive():  # a lane stuck past the grace time: this soak's own processes
            errors[name] += 1
            print(f"soak: ERROR: lane {name} did not finish; killing it (pid {p.pid})",
                  flush=True)
            for pid in _daemons({p.pid: name}):
                os.kill(pid, signal.SIGKILL)
            os.kill(p.pid, signal.SIGKILL)
            p.join(5)
        elif p.exitcode != 0:
            errors[name] += 1
            print(f"soak: ERROR: lane {name} exited with status {p.exitcode}", flush=True)
    left = helpers.cleanup_leftovers(scratch)
    if left:
        print(f"soak: cleaned up leftover mounts: {left}", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)

    print(f"soak: done in {time.monotonic() - start:.0f}s: " +
          ", ".join(f"{n} {ops[n]} ops {errors[n]} errors" for n in lanes), flush=True)
    print("soak: RSS KiB per daemon (first -> last, max, seen from-to s):", flush=True)
    for pid, (name, first, last, mx, t0, t1) in sorted(rss.items(), key=lambda x: x[1][4]):
        if t1 - t0 >= args.interval or name != "fuzz":  # short fuzz daemons: summary only
            print(f"  {name}[{pid}]: {first} -> {last}, max {mx}, {t0:.0f}-{t1:.0f}s",
                  flush=True)
    fz = [r for r in rss.values() if r[0] == "fuzz"]
    if fz:
        print(f"  fuzz: {len(fz)} daemons sampled, max {max(r[3] for r in fz)}", flush=True)
    return 1 if any(errors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
