"""Command line of the differential fuzzer (`make fuzz SECONDS=3600` runs it).

    cd tests && /usr/bin/python3 -m difffuzz [--seconds S] [--seed N | --first-seed N]
                                          [--ops N] [--check-every K] [--no-shrink]
                                          [--out DIR] [--stop] [--mode M[,M...]]

Runs seeds one after the other (each: fresh layers from the seed, --ops steps, in the next
option mode of --mode, see runner.MODES), printing a progress line per seed. A divergence is shrunk and printed as a ready-to-paste regression
test (also written to --out); the run goes on with the next seed unless --stop. Exit status 1
when anything diverged. Needs root, the kernel overlayfs and an ovlfs binary (OVLFS_BIN or
build/ovlfs)."""
import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import time

from helpers import cleanup_leftovers, ovlfs_binary
from .layers import gen_layers
from .runner import ALL_MODES, MODES, run_generated
from .shrink import Shrinker, format_repro


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m difffuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="run this long (default 60)")
    ap.add_argument("--seed", type=int, help="run this seed only")
    ap.add_argument("--first-seed", type=int, help="first seed (default: from the clock)")
    ap.add_argument("--count", type=int, help="run this many seeds (then stop)")
    ap.add_argument("--ops", type=int, default=300, help="steps per seed (default 300)")
    ap.add_argument("--check-every", type=int, default=25,
                    help="full tree and upper comparison every K steps (default 25)")
    ap.add_argument("--no-shrink", action="store_true")
    ap.add_argument("--shrink-seconds", type=float, default=240,
                    help="time for shrinking one divergence (default 240)")
    ap.add_argument("--max-shrinks", type=int, default=20,
                    help="shrink at most this many divergences per run; later ones are "
                    "printed unshrunk (default 20)")
    ap.add_argument("--out", default=None, help="directory for reproductions "
                    "(default build/fuzz-findings)")
    ap.add_argument("--stop", action="store_true", help="stop at the first divergence")
    ap.add_argument("--exclude", default="", help="comma-separated ops not to generate "
                    "(to look past a known divergence), e.g. fopen,macro_fd")
    ap.add_argument("--ovlfs-opts", default=None, help="extra ovlfs -o options, comma-"
                    "separated (e.g. writeback=1); also OVLFS_FUZZ_OPTS")
    ap.add_argument("--mode", default=os.environ.get("OVLFS_FUZZ_MODE") or ",".join(MODES),
                    help="option modes, comma-separated, cycled seed by seed: "
                    f"{', '.join(MODES)} or all (default all; also OVLFS_FUZZ_MODE)")
    ap.add_argument("--tmp", default=None, help="scratch directory (default: a new temp dir)")
    args = ap.parse_args(argv)
    modes = list(ALL_MODES) if args.mode == "all" else [m for m in args.mode.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        ap.error(f"--mode: unknown {bad} (modes: {', '.join(MODES)}, all)")

    if os.geteuid() != 0:
        print("fuzz: needs root (mounts, trusted.* xattrs, whiteouts)", file=sys.stderr)
        return 2
    binary = ovlfs_binary()
    if not os.access(binary, os.X_OK):
        print(f"fuzz: no ovlfs binary at {binary} (make build/ovlfs or set OVLFS_BIN)",
              file=sys.stderr)
        return 2
    out = pathlib.Path(args.out or pathlib.Path(__file__).resolve().parents[2] / "build" /
                       "fuzz-findings")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="ovlfs-fuzz-", dir=args.tmp))
    seeds = ([args.seed] if args.seed is not None else
             _count(args.first_seed if args.first_seed is not None
                    else int(time.time()) % 1_000_000 * 1000))
    exclude = tuple(x for x in args.exclude.split(",") if x)
    if args.ovlfs_opts is not None:  # the runner (and the shrinker's replays) read it
        os.environ["OVLFS_FUZZ_OPTS"] = args.ovlfs_opts
    start = time.monotonic()
    total_ops = found = nseeds = 0
    per_mode = {m: [0, 0, 0] for m in modes}  # seeds, steps, divergences
    print(f"fuzz: ovlfs {binary}, {args.ops} steps per seed, tree check every "
          f"{args.check_every}, modes {','.join(modes)}, for {args.seconds:.0f}s; "
          f"scratch {scratch}", flush=True)
    try:
        for seed in seeds:
            if args.count is not None and nseeds >= args.count:
                break
            if args.count is None and nseeds and time.monotonic() - start > args.seconds:
                break
            mode = modes[nseeds % len(modes)]
            nseeds += 1
            lowers, upper = gen_layers(seed)
            base = scratch / f"seed{seed}"
            t = time.monotonic()
            steps, div, notes = run_generated(base, seed, lowers, upper, args.ops,
                                              args.check_every, exclude, mode)
            shutil.rmtree(base, ignore_errors=True)
            total_ops += len(steps)
            per_mode[mode][0] += 1
            per_mode[mode][1] += len(steps)
            per_mode[mode][2] += div is not None
            el = time.monotonic() - start
            status = "ok" if div is None else f"DIVERGED ({div.kind} at step {div.index})"
            print(f"[{el:6.0f}s] seed {seed} {mode}: {len(steps)} steps {status}, "
                  f"{len(notes)} modelled, {len(steps) / (time.monotonic() - t):.0f} steps/s"
                  f" | total {total_ops} steps, {found + (div is not None)} divergences",
                  flush=True)
            if div is None:
                continue
            found += 1
            print(str(div), flush=True)
            if args.no_shrink or found > args.max_shrinks:
                text = format_repro(seed, lowers, upper, steps[:div.index + 1], div, notes,
                                    check_every=args.check_every, mode=mode)
            else:
                sh = Shrinker(scratch, lowers, upper, steps, div, args.shrink_seconds,
                              log=lambda m: print(m, flush=True), check_every=args.check_every,
                              mode=mode)
                confirmed = sh.run()
                text = format_repro(seed, sh.lowers, sh.upper, sh.steps, sh.div, sh.notes,
                                    check_every=sh.check_every, mode=mode)
                if not confirmed:
                    text = "# NOTE: the shrunk form did not reproduce at the last run\n" + text
            print(text, flush=True)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"seed{seed}.py").write_text(text + "\n")
            print(f"(written to {out / f'seed{seed}.py'})", flush=True)
            if args.stop:
                break
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        left = cleanup_leftovers(scratch)
        if left:
            print(f"fuzz: cleaned up leftover mounts: {left}", flush=True)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"fuzz: {nseeds} seeds, {total_ops} steps, {found} divergences in "
          f"{time.monotonic() - start:.0f}s", flush=True)
    for m, (n, k, d) in per_mode.items():
        print(f"fuzz: mode {m}: {n} seeds, {k} steps, {d} divergences", flush=True)
    return 1 if found else 0


def _count(n):
    while True:
        yield n
        n += 1


if __name__ == "__main__":
    sys.exit(main())
