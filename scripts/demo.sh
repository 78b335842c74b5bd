#!/usr/bin/env bash
# ovlfs demo (`make demo`): builds a three-layer sample in a temporary directory, mounts it with
# ovlfs and tours the merged tree, saying for each path which layer it comes from and what
# was hidden by what. Then it writes through the mount and shows the copy-up.
# Usage: bash scripts/demo.sh [path/to/ovlfs]        (needs root: whiteouts are char devices
# 0/0 and opaque marks are trusted.* xattrs). Exits 0 only if every check held.
# shellcheck disable=SC2317  # the helpers below run from the EXIT trap and from check()
set -u
export LC_ALL=C

OVLFS=${1:-build/ovlfs}
if [[ $EUID -ne 0 ]]; then
	echo "demo: needs root (mknod of whiteouts, trusted.overlay.* xattrs, mounting)" >&2
	exit 1
fi
if [[ ! -x $OVLFS ]]; then
	echo "demo: $OVLFS is not an executable; build it first (make)" >&2
	exit 1
fi
OVLFS=$(realpath "$OVLFS")

TMP=$(mktemp -d /tmp/ovlfs-demo.XXXXXX)
BASE=$TMP/lower-base TOP=$TMP/lower-top UPPER=$TMP/upper WORK=$TMP/work MNT=$TMP/merged
PID=""
FAILS=0

mounted() { awk -v m="$MNT" '$2 == m && $3 ~ /^fuse/ { found = 1 } END { exit !found }' /proc/mounts; }
not_mounted() { ! mounted; }
alive() { # our daemon runs and is not a zombie waiting to be reaped
	local state
	state=$(cut -d' ' -f3 "/proc/$PID/stat" 2>/dev/null) && [[ $state != Z ]]
}
no_overlay_xattr_listed() { ! getfattr -d -m - "$1" 2>/dev/null | grep -q 'trusted\.overlay'; }

cleanup() {
	if mounted; then
		fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
	fi
	if [[ -n $PID ]]; then # our own daemon only, by its pid
		for _ in $(seq 50); do alive || break; sleep 0.1; done
		if alive; then kill "$PID"; sleep 1; fi
		if alive; then kill -9 "$PID"; fi
		wait "$PID" 2>/dev/null
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@" 2>&1 | sed 's/^/  /'; }
check() { # check DESCRIPTION COMMAND...: the command must succeed
	local what=$1; shift
	if "$@" >/dev/null 2>&1; then echo "  ok: $what"; else echo "  FAILED: $what"; FAILS=$((FAILS + 1)); fi
}

# ---- the sample layers -------------------------------------------------------------------
mkdir -p "$BASE"/{etc,bin,docs,src,var/log} "$TOP"/{etc,bin,docs,opt/extra} "$UPPER"/{etc,src} "$WORK" "$MNT"
echo "base-host" >"$BASE/etc/hostname"
echo "Welcome! (motd from the base layer)" >"$BASE/etc/motd"
printf '#!/bin/sh\necho "tool v1 (base layer)"\n' >"$BASE/bin/tool"
echo "document A, from the base layer" >"$BASE/docs/a.txt"
echo "document B, from the base layer" >"$BASE/docs/b.txt"
for f in main.c util.c old.c; do echo "/* $f from the base layer */" >"$BASE/src/$f"; done
echo "boot ok" >"$BASE/var/log/boot.log"
chmod 755 "$BASE/bin/tool"

echo "top-host" >"$TOP/etc/hostname"                        # overrides the base file
printf '#!/bin/sh\necho "tool v2 (top lower layer)"\n' >"$TOP/bin/tool"
chmod 755 "$TOP/bin/tool"
mknod "$TOP/docs/b.txt" c 0 0                               # whiteout: hides base docs/b.txt
echo "extras shipped by the top lower layer" >"$TOP/opt/extra/readme.txt"

mknod "$UPPER/etc/motd" c 0 0                               # whiteout: hides base etc/motd
setfattr -n trusted.overlay.opaque -v y "$UPPER/src"        # opaque: hides all lower src/*
echo "/* new.c, only in the upper layer */" >"$UPPER/src/new.c"
echo "notes written in the upper layer" >"$UPPER/notes.txt"
A_ORIG=$(cat "$BASE/docs/a.txt")

say "Layers (top first): upper=$UPPER, lower-top=$TOP, lower-base=$BASE"
(cd "$TMP" && find upper lower-top lower-base -mindepth 1 -printf '  %y %p\n' | sort -k2)
echo "  (type c = char device: the whiteouts)"

# ---- mount ---------------------------------------------------------------------------------
say "Mounting: ovlfs -f -o lowerdir=$TOP:$BASE,upperdir=$UPPER,workdir=$WORK $MNT"
"$OVLFS" -f -o "lowerdir=$TOP:$BASE,upperdir=$UPPER,workdir=$WORK" "$MNT" >"$TMP/ovlfs.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
	mounted && break
	alive || break
	sleep 0.1
done
if ! mounted; then
	echo "demo: ovlfs did not mount; its output:" >&2
	cat "$TMP/ovlfs.log" >&2
	exit 1
fi

# ---- the tour ------------------------------------------------------------------------------
say "The merged root: the union of all three layers"
run ls -la "$MNT"
check "root shows bin docs etc notes.txt opt src var" \
	test "$(cd "$MNT" && echo *)" = "bin docs etc notes.txt opt src var"

say "etc/hostname: present in both lowers; the top lower layer wins"
run cat "$MNT/etc/hostname"
check "etc/hostname is top-host" test "$(cat "$MNT/etc/hostname")" = "top-host"

say "etc/motd: the base layer has it, but the upper layer holds a whiteout (char 0/0)"
run ls -l "$UPPER/etc/motd"
run ls -la "$MNT/etc"
check "etc/motd is hidden" test ! -e "$MNT/etc/motd"
check "etc/hostname is still there" test -e "$MNT/etc/hostname"

say "docs: b.txt is whited out by the top lower layer; a.txt comes from the base"
run ls -la "$MNT/docs"
check "docs/a.txt visible" test -f "$MNT/docs/a.txt"
check "docs/b.txt hidden" test ! -e "$MNT/docs/b.txt"

say "src: opaque in the upper layer (trusted.overlay.opaque=y), so no lower src/* shows"
run getfattr -n trusted.overlay.opaque "$UPPER/src"
run ls -la "$MNT/src"
check "src holds only new.c" test "$(cd "$MNT/src" && echo *)" = "new.c"
check "the opaque mark itself is not listed through the mount" no_overlay_xattr_listed "$MNT/src"

say "bin/tool: the top lower layer's version replaces the base one"
run "$MNT/bin/tool"
check "bin/tool says v2" bash -c "'$MNT/bin/tool' | grep -q 'tool v2'"

say "opt/extra (top lower only), var/log (base only), notes.txt (upper only)"
run cat "$MNT/opt/extra/readme.txt" "$MNT/var/log/boot.log" "$MNT/notes.txt"
check "opt/extra/readme.txt visible" test -f "$MNT/opt/extra/readme.txt"
check "var/log/boot.log visible" test -f "$MNT/var/log/boot.log"
check "notes.txt visible" test -f "$MNT/notes.txt"

# ---- a write: copy-up ------------------------------------------------------------------------
say "Writing to docs/a.txt (a base-layer file) through the mount"
if echo "appended through the mount" >>"$MNT/docs/a.txt" 2>"$TMP/write.err"; then
	run cat "$MNT/docs/a.txt"
	run ls -la "$UPPER/docs"
	check "the merged file has the new line" grep -q "appended through the mount" "$MNT/docs/a.txt"
	check "the copy landed in the upper layer" grep -q "appended through the mount" "$UPPER/docs/a.txt"
	check "the upper copy kept the original content" grep -qF "$A_ORIG" "$UPPER/docs/a.txt"
	check "the base layer's file is intact" test "$(cat "$BASE/docs/a.txt")" = "$A_ORIG"
else
	echo "  note: the write failed ($(cat "$TMP/write.err")); the write side may not be" \
		"finished yet - skipping the copy-up part"
fi

# ---- unmount ---------------------------------------------------------------------------------
say "Unmounting with fusermount3 -u"
fusermount3 -u "$MNT"
wait "$PID"
STATUS=$?
PID=""
check "ovlfs exited with status 0 (it said: $(tr '\n' ' ' <"$TMP/ovlfs.log"))" test "$STATUS" -eq 0
check "the mount is gone" not_mounted
check "the base layer is unchanged" test "$(cat "$BASE/etc/motd")" = "Welcome! (motd from the base layer)"

if ((FAILS)); then
	say "demo: $FAILS check(s) FAILED"
	exit 1
fi
say "demo: all checks passed"
exit 0
