#!/bin/bash
# Path walks per file (issue 18, item 5): daemon syscalls and openat2 per file (strace -c)
# and the time of each workload (median of R runs, each on a fresh mount), on tmpfs layers.
# usage (root, strace and perf installed): bench/pathwalk.sh OVLFS_BINARY
# env: N files (2000), R runs (5), DIR scratch directory (/tmp/ovlfs-pathwalk),
#      OUT results directory (DIR.out), PERF=FILE: also a perf record -g of cp -a into FILE,
#      TRACE=0: times only (no strace run).
set -u
BIN=$1
N=${N:-2000}
R=${R:-5}
B=${DIR:-/tmp/ovlfs-pathwalk}
O=${OUT:-$B.out}
PID=

cleanup() {
	mountpoint -q "$B/m" && umount "$B/m"
	[ -n "$PID" ] && wait "$PID" 2>/dev/null
	mountpoint -q "$B" && umount "$B"
	rmdir "$B" 2>/dev/null
}
trap cleanup EXIT

mkdir -p "$B" && mount -t tmpfs -o size=1g tmpfs "$B" || exit 1
rm -rf "$O" && mkdir -p "$O" "$B"/{l,m,src} && echo x >"$B/l/lowerfile" || exit 1
# The source tree: N files in N/50 directories x/a/b/c, 50 in each.
for ((i = 0; i < N / 50; i++)); do
	mkdir -p "$B/src/t/d$i/a/b/c" && (cd "$B/src/t/d$i/a/b/c" && touch $(seq -f f%g 50))
done
tar -C "$B/src" -cf "$B/t.tar" t

mnt() {
	rm -rf "$B/u" "$B/w" && mkdir "$B/u" "$B/w"
	"$BIN" -f -o "lowerdir=$B/l,upperdir=$B/u,workdir=$B/w" "$B/m" >"$B/log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do mountpoint -q "$B/m" && return; sleep 0.05; done
	echo "no mount" >&2 && exit 1
}
umnt() { umount "$B/m" && wait "$PID"; PID=; }

declare -A CMD=(
	[create]="mkdir c && cd c && touch \$(seq -f f%g $N)"
	[cp]="cp -a $B/src/t cp"
	[tar]="tar xf $B/t.tar"
	[rm]="rm -rf t"
)
ORDER="create cp tar rm"

# Times: each run on a fresh mount, the workloads in order (rm removes tar's tree); with
# the wall time, the daemon's CPU time (perf stat task-clock, all its threads: steadier
# than wall time on a busy machine; it includes the one of the pause before the workload).
for ((r = 0; r < R; r++)); do
	mnt
	for w in $ORDER; do
		perf stat -e task-clock -x, -p "$PID" -o "$O/pstat" 2>/dev/null &
		c=$!
		sleep 0.2
		s=$(date +%s%N)
		(cd "$B/m" && eval "${CMD[$w]}") >/dev/null 2>&1 || echo "$w failed" >&2
		s=$(( ($(date +%s%N) - s) / 1000000 ))
		kill -INT "$c" && wait "$c"
		echo "$w $s $(awk -F, '/task-clock/ { print int($1) }' "$O/pstat")" >>"$O/times"
	done
	umnt
done

# Syscalls: one more run under strace -c -f, one trace per workload.
mnt
for w in $ORDER; do
	[ "${TRACE:-1}" = 0 ] && : >"$O/$w.strace" && continue
	strace -c -f -p "$PID" -o "$O/$w.strace" 2>/dev/null &
	s=$!
	sleep 1
	(cd "$B/m" && eval "${CMD[$w]}") >/dev/null 2>&1
	sleep 0.3
	kill -INT "$s" && wait "$s"
done
umnt

# The profile: its own run (strace would dominate it).
if [ -n "${PERF:-}" ]; then
	mnt
	(cd "$B/m" && eval "${CMD[create]}") >/dev/null 2>&1
	perf record -q -g -p "$PID" -o "$PERF" 2>/dev/null &
	p=$!
	sleep 1
	(cd "$B/m" && eval "${CMD[cp]}") >/dev/null 2>&1
	kill -INT "$p" && wait "$p"
	umnt
fi

python3 - "$N" "$O" $ORDER <<'PY'
import sys, statistics
n, out, order = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
times, cpu = {}, {}
for line in open(f"{out}/times"):
    w, ms, cms = line.split()
    times.setdefault(w, []).append(int(ms))
    cpu.setdefault(w, []).append(int(cms))
print(f"{'workload':8} {'syscalls/file':>13} {'openat2/file':>12} {'ms (median)':>11} "
      f"{'daemon cpu ms':>13}  runs (ms)")
for w in order:
    calls = openat2 = 0
    for l in open(f"{out}/{w}.strace"):
        f = l.split()
        if l.rstrip().endswith("total"):
            calls = int(f[3 if len(f) > 4 else 2])
        elif f and f[-1] == "openat2":
            openat2 = int(f[3])
    print(f"{w:8} {calls / n:13.1f} {openat2 / n:12.1f} {statistics.median(times[w]):11} "
          f"{statistics.median(cpu[w]):13}  "
          f"{' '.join(map(str, times[w]))}")
PY
