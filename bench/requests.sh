#!/bin/bash
# Round trips and daemon syscalls per file (issue 18, item 2): for each workload, the
# requests the daemon read (its SIGUSR1 "requests:" counts, before and after) and the
# syscalls it made (strace -c -f on its pid), divided by the number of files.
# usage (root, strace installed): bench/requests.sh OVLFS_BINARY [extra -o options]
# env: N files per workload (2000), DIR scratch directory (/tmp/ovlfs-requests).
set -u
BIN=$1
EXTRA=${2:+,$2}
N=${N:-2000}
M=$((N / 10))
B=${DIR:-/tmp/ovlfs-requests}
PID=

cleanup() {
	mountpoint -q "$B/m" && umount "$B/m"
	[ -n "$PID" ] && wait "$PID" 2>/dev/null
	rm -rf "$B"
}
trap cleanup EXIT

rm -rf "$B" && mkdir -p "$B"/{l,u,w,m,out} "$B/l/ltree" || exit 1
for i in $(seq "$N"); do echo "content $i" >"$B/l/ltree/f$i"; done

mnt() {
	"$BIN" -f -o "lowerdir=$B/l,upperdir=$B/u,workdir=$B/w$EXTRA" "$B/m" >"$B/log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do mountpoint -q "$B/m" && return; sleep 0.05; done
	echo "no mount" >&2 && exit 1
}
umnt() { umount "$B/m" && wait "$PID"; PID=; }
counts() { kill -USR1 "$PID"; sleep 0.3; grep "requests:" "$B/log" | tail -1; }

# phase NAME FILES COMMAND: COMMAND runs in the mount point.
phase() {
	local name=$1 files=$2 before after s
	before=$(counts)
	strace -c -f -p "$PID" -o "$B/out/$name.strace" 2>/dev/null &
	s=$!
	sleep 1
	(cd "$B/m" && eval "$3") >/dev/null 2>&1
	sleep 0.3
	after=$(counts)
	kill -INT "$s" && wait "$s"
	python3 - "$name" "$files" "$before" "$after" "$B/out/$name.strace" <<'PY'
import sys
name, files, before, after, trace = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
def parse(line):
    words = line.split("requests:", 1)[1].split() if "requests:" in line else []
    return {k: int(v) for k, v in (w.split("=") for w in words)}
b, a = parse(before), parse(after)
sent = {k: v - b.get(k, 0) for k, v in a.items() if v - b.get(k, 0)}
calls = next(int(l.split()[3]) for l in open(trace) if l.rstrip().endswith("total"))
ops = " ".join(f"{k}={v / files:.2f}" for k, v in sorted(sent.items(), key=lambda kv: -kv[1]))
print(f"{name:6} requests/file {sum(sent.values()) / files:6.2f}  syscalls/file "
      f"{calls / files:6.1f}  {ops}")
PY
}

mnt
mkdir "$B/m/d1" "$B/m/d2"
phase touch "$N" 'cd d1 && touch $(seq -f f%g '"$N"')'
phase write "$N" 'cd d2 && for i in $(seq '"$N"'); do echo x > f$i; done'
phase dd "$M" 'mkdir d3 && for i in $(seq '"$M"'); do dd if=/dev/zero of=d3/f$i bs=4k count=64 status=none; done'
umnt && mnt
phase cat "$N" 'cat d2/*'
umnt && mnt
phase ls "$N" 'ls -l d2'
umnt && mnt
phase rm $((2 * N + M)) 'rm -rf d1 d2 d3'
umnt && mnt
phase tar "$N" 'tar cf - ltree | cat'
umnt
