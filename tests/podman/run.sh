#!/usr/bin/env bash
# Opt-in test (`make test-podman`): Debian's podman with ovlfs as the overlay driver's
# mount_program, against fuse-overlayfs and the kernel overlay driver on the same steps.
#
# usage: tests/podman/run.sh OVLFS_BINARY [DRIVER...]   (drivers: ovlfs fuse-overlayfs kernel)
#
# Every driver gets its own storage, run and config directories under one temp dir (through
# CONTAINERS_CONF and CONTAINERS_STORAGE_CONF), so the machine's podman state is not touched;
# all of it is removed at the end. Each driver:
#   1. imports a busybox root filesystem as an image,
#   2. runs a container that writes, appends, deletes, renames lower directories, makes hard
#      links and symlinks, changes a mode; records `podman diff`,
#   3. commits it, runs the new image and lists what it sees,
#   4. stacks LAYERS more layers (run + commit each) below a long storage path, so the
#      mount options pass a page (containers/storage still gives absolute layer paths),
#   5. removes everything and checks no mount and no mount-program process is left.
# The listings and diffs of all drivers must be identical; timings are printed at the end.
set -euo pipefail

ovlfs=$(realpath "${1:?usage: run.sh OVLFS_BINARY [DRIVER...]}")
shift
drivers=("$@")
[ ${#drivers[@]} -gt 0 ] || drivers=(ovlfs fuse-overlayfs kernel)
layers=${LAYERS:-20}
runtime=${PODMAN_RUNTIME:-runc}

[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root" >&2; exit 1; }
[ -x "$ovlfs" ] || { echo "run.sh: $ovlfs is not executable" >&2; exit 1; }

work=$(mktemp -d /tmp/ovlfs-podman.XXXXXX)
failures=0
# The two places podman 4.3 writes outside its configured directories whatever the
# configuration: its blob digest cache and an empty network run directory. Removed at the
# end if this run made them.
outside=()
for p in /var/lib/containers /run/containers; do
	[ -e "$p" ] || outside+=("$p")
done

log() { printf '%s\n' "$*" >&2; }
fail() { log "FAIL: $*"; failures=$((failures + 1)); }

# Unmounts whatever is still mounted below $work (deepest first), then removes it.
cleanup() {
	local m
	for d in "${drivers[@]}"; do
		[ -f "$work/$d/containers.conf" ] && pod "$d" system reset -f >/dev/null 2>&1 || true
	done
	awk -v w="$work" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r |
		while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	rm -rf "$work" "${outside[@]}"
}
trap cleanup EXIT

# podman with driver $1's private configuration.
pod() {
	local d=$1
	shift
	CONTAINERS_CONF="$work/$d/containers.conf" CONTAINERS_STORAGE_CONF="$work/$d/storage.conf" \
		podman "$@"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }

# A busybox tree with a few files and directories for the container to change.
make_rootfs() {
	local r=$work/rootfs a
	mkdir -p "$r"/{bin,etc,tmp,root,proc,sys,dev}
	cp /bin/busybox "$r/bin/busybox"
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || ln -s busybox "$r/bin/$a"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
	printf 'root:x:0:\n' >"$r/etc/group"
	mkdir -p "$r/data/sub/deeper" "$r/data/tree/a/b/c" "$r/data/gone_dir/inner"
	echo hello >"$r/data/keep"
	echo doomed >"$r/data/del"
	echo f >"$r/data/sub/f"
	echo g >"$r/data/sub/deeper/g"
	echo c >"$r/data/tree/a/b/c/file"
	echo x >"$r/data/gone_dir/inner/x"
	echo mode >"$r/data/modeonly"
	chmod 644 "$r/data/modeonly"
	echo pair >"$r/data/hl1"
	ln "$r/data/hl1" "$r/data/hl2"
	chmod 1777 "$r/tmp"
	tar -C "$r" -cf "$work/rootfs.tar" .
}

# Private storage.conf and containers.conf for driver $1.
configure() {
	local d=$1 dir=$work/$1 long
	# A long graphroot: with LAYERS layers the lowerdir list of absolute paths passes 4 KiB.
	long=$(printf 'long-storage-path-%s' {1..8})
	mkdir -p "$dir/$long/graph" "$dir/run" "$dir/tmp" "$dir/net"
	{
		printf '[storage]\ndriver = "overlay"\n'
		printf 'graphroot = "%s"\nrunroot = "%s"\n' "$dir/$long/graph" "$dir/run"
		printf '[storage.options.overlay]\n'
		case $d in
		ovlfs) printf 'mount_program = "%s"\n' "$ovlfs" ;;
		fuse-overlayfs) printf 'mount_program = "%s"\n' "$(command -v fuse-overlayfs)" ;;
		kernel) ;;
		esac
	} >"$dir/storage.conf"
	# default_ulimits: podman as root asks for a 1048576 RLIMIT_NOFILE and NPROC, which needs
	# CAP_SYS_RESOURCE (missing on the test VMs, and podman caps its own children's NPROC
	# hard limit at 32768 there); modest fixed limits work everywhere.
	# runc + cgroupfs: Debian's crun refuses cgroup v1/hybrid hosts.
	cat >"$dir/containers.conf" <<-EOF
		[containers]
		netns = "none"
		default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
		[network]
		network_config_dir = "$dir/net"
		[engine]
		runtime = "$runtime"
		cgroup_manager = "cgroupfs"
		events_logger = "file"
		lock_type = "file"
		tmp_dir = "$dir/tmp"
		static_dir = "$dir/$long/graph/libpod"
		volume_path = "$dir/$long/graph/volumes"
		image_copy_tmp_dir = "$dir/tmp"
	EOF
}

# Run inside the first container: every kind of change a layer can record.
mutate='set -e
cd /data
before=$(stat -c %i sub)
echo new >new
echo more >>keep
rm del
mv sub sub2
after=$(stat -c %i sub2)
mv tree/a tree/moved
mkdir -p made/deep
echo in >made/deep/f
ln keep keep.link
ln -s keep keep.sym
chmod 600 modeonly
rm -r gone_dir
rm hl2
echo pair2 >>hl1
if [ "$before" = "$after" ]; then echo "dir-rename: rename"; else echo "dir-rename: copy"; fi'

# Run in the committed image: what it sees, in an order that does not depend on the driver.
inspect='cd /data
find . | sort | while read -r f; do
	if [ -d "$f" ]; then stat -c "%n %F %a %u:%g" "$f"
	else stat -c "%n %F %a %u:%g %s %h" "$f"; fi
done
for f in new keep keep.link hl1 sub2/f sub2/deeper/g tree/moved/b/c/file made/deep/f; do
	printf "%s: %s\n" "$f" "$(cat "$f" | tr "\n" " ")"
done
readlink keep.sym
[ "$(stat -c %i keep)" = "$(stat -c %i keep.link)" ] && echo "keep and keep.link: one inode"
for f in del sub gone_dir hl2 tree/a; do [ -e "$f" ] && echo "still there: $f"; done
true'

# Fails unless nothing of driver $1 is left ($2 says when): no overlay or FUSE mount below
# its directory (podman's bind mount of its storage directory stays until the reset) and no
# process that was given a path below it (a mount program's daemon outliving its mount).
no_leftovers() {
	local d=$1 what=$2 m
	m=$(awk -v w="$work/$d/" '{
		for (i = 7; i <= NF; i++) if ($i == "-") break
		if (index($5, w) == 1 && ($(i + 1) == "overlay" || $(i + 1) ~ /^fuse/)) print $5
	}' /proc/self/mountinfo)
	[ -z "$m" ] || { log "$d: mounts left $what: $m"; exit 1; }
	if pgrep -f -- "$work/$d/" >/dev/null; then
		log "$d: processes left $what: $(pgrep -a -f -- "$work/$d/")"
		exit 1
	fi
}

scenario() {
	local d=$1 out=$work/$1 t0 t1 i img
	configure "$d"
	log "== $d"
	t0=$(now)
	pod "$d" import -q "$work/rootfs.tar" localhost/ovlfs-test:base >/dev/null
	t1=$(now)
	echo "import $(elapsed "$t0" "$t1")" >>"$out/times.txt"

	t0=$(now)
	pod "$d" run --name mut localhost/ovlfs-test:base sh -c "$mutate" >"$out/mutate.txt"
	t1=$(now)
	echo "run $(elapsed "$t0" "$t1")" >>"$out/times.txt"
	pod "$d" diff mut | sort >"$out/diff.txt"

	t0=$(now)
	pod "$d" commit -q mut localhost/ovlfs-test:changed >/dev/null
	t1=$(now)
	echo "commit $(elapsed "$t0" "$t1")" >>"$out/times.txt"
	pod "$d" rm mut >/dev/null

	t0=$(now)
	pod "$d" run --rm localhost/ovlfs-test:changed sh -c "$inspect" >"$out/inspect.txt"
	t1=$(now)
	echo "inspect $(elapsed "$t0" "$t1")" >>"$out/times.txt"

	# A busier container: 2000 files written, listed, read back and deleted; the median of
	# three runs, as the machine may be busy.
	for i in 1 2 3; do
		t0=$(now)
		pod "$d" run --rm localhost/ovlfs-test:changed sh -c \
			'mkdir /w; for i in $(seq 2000); do echo $i >/w/$i; done; ls -l /w | wc -l; cat /w/* | wc -l; rm -r /w /data' \
			>"$out/work.txt"
		t1=$(now)
		elapsed "$t0" "$t1" >>"$out/work-times.txt"
		echo >>"$out/work-times.txt"
	done
	echo "work $(sort -n "$out/work-times.txt" | grep . | sed -n 2p)" >>"$out/times.txt"
	# Every container has ended: podman unmounted their root filesystems, and each mount
	# program's daemon must have exited with its mount.
	no_leftovers "$d" "after the containers ended"

	# Stack layers: each run adds a file and appends a line; the last image sees them all.
	img=localhost/ovlfs-test:changed
	t0=$(now)
	for i in $(seq "$layers"); do
		pod "$d" run --name "l$i" "$img" sh -c "echo $i >/data/layer$i; echo $i >>/data/chain; rm -f /data/layer$((i - 1))"
		pod "$d" commit -q "l$i" "localhost/ovlfs-test:l$i" >/dev/null
		pod "$d" rm "l$i" >/dev/null
		img=localhost/ovlfs-test:l$i
	done
	pod "$d" run --rm "$img" sh -c 'ls /data | tr "\n" " "; echo; tr "\n" " " </data/chain; echo' >"$out/layers.txt"
	t1=$(now)
	echo "layers $(elapsed "$t0" "$t1")" >>"$out/times.txt"
	pod "$d" image inspect --format '{{len .RootFS.Layers}}' "$img" >"$out/nlayers.txt"

	pod "$d" rmi -a -f >/dev/null
	pod "$d" system reset -f >/dev/null 2>&1
	no_leftovers "$d" "after podman system reset"
	awk -v w="$work/$d/" 'index($5, w) == 1 {exit 1}' /proc/self/mountinfo ||
		{ log "$d: storage still mounted after podman system reset"; exit 1; }
}

make_rootfs
for d in "${drivers[@]}"; do
	# A subshell, not `if ! scenario`: set -e is off in a function tested by if.
	set +e
	(set -e; scenario "$d")
	rc=$?
	set -e
	[ $rc -eq 0 ] || fail "$d: a podman step failed (see above)"
done

# Each driver's record must match the first's.
ref=${drivers[0]}
for d in "${drivers[@]}"; do
	for f in diff inspect work layers nlayers; do
		[ -f "$work/$d/$f.txt" ] || continue
		if ! cmp -s "$work/$ref/$f.txt" "$work/$d/$f.txt"; then
			fail "$d: $f differs from $ref"
			diff -u "$work/$ref/$f.txt" "$work/$d/$f.txt" >&2 || true
		fi
	done
done

log ""
log "== $ref: podman diff"
cat "$work/$ref/diff.txt" >&2
log "== $ref: committed image"
cat "$work/$ref/inspect.txt" >&2
log "== $ref: $(cat "$work/$ref/nlayers.txt" 2>/dev/null) layers: $(head -1 "$work/$ref/layers.txt" 2>/dev/null)"
[ "$(sed -n 2p "$work/$ref/layers.txt")" = "$(seq -s ' ' "$layers") " ] ||
	fail "$ref: the stacked image does not see every layer's line"
grep -q '^keep and keep.link: one inode$' "$work/$ref/inspect.txt" || fail "$ref: hard link lost"
! grep -q '^still there' "$work/$ref/inspect.txt" || fail "$ref: a deleted name is back"
# ovlfs renames a lower directory where the others answer EXDEV (and mv copies).
if [ -f "$work/ovlfs/mutate.txt" ]; then
	grep -q '^dir-rename: rename$' "$work/ovlfs/mutate.txt" ||
		fail "ovlfs: a lower directory was copied, not renamed"
fi

log ""
log "$(podman --version), $($runtime --version | head -1), $(fuse-overlayfs --version 2>&1 | grep "^fuse-overlayfs"), kernel $(uname -r)"
printf '%-15s %7s %7s %7s %7s %9s %9s  %s\n' driver import run commit run2 2000files "${layers}layers" "mutation run" >&2
for d in "${drivers[@]}"; do
	t() { awk -v k="$1" '$1 == k {print $2}' "$work/$d/times.txt" 2>/dev/null | grep . || echo -; }
	printf '%-15s %7s %7s %7s %7s %9s %9s  %s\n' "$d" "$(t import)" "$(t run)" "$(t commit)" \
		"$(t inspect)" "$(t work)" "$(t layers)" "$(head -1 "$work/$d/mutate.txt" 2>/dev/null || echo -)" >&2
done
if [ "$failures" -ne 0 ]; then
	log "test-podman: $failures failure(s)"
	exit 1
fi
log "test-podman: OK"
