#!/usr/bin/env bash
# Runs every mount test with requests over io_uring: turns the kernel's fuse.enable_uring on
# for the run and puts back what it was. Usage: tests/uring/run.sh BUILT_OVLFS [pytest args];
# URING_TESTS names the tests to run (default: all of tests/).
set -euo pipefail
param=/sys/module/fuse/parameters/enable_uring
bin=$(realpath "$1")
shift
if [ ! -w "$param" ]; then
	echo "mount-tests-uring: skipped, this kernel has no FUSE over io_uring ($param)"
	exit 0
fi
before=$(cat "$param")
trap 'echo "$before" > "$param"' EXIT
echo Y > "$param"
here=$(cd "$(dirname "$0")" && pwd)
# Left out: the tests of mount(8) and fstab starting the installed binary by name, which
# check that the daemon is the binary itself (here it is the stand-in's exec), and the
# tests that copy the binary for another user (the stand-in execs one in this tree).
OVLFS_URING_REAL="$bin" OVLFS_BIN="$here/ovlfs" OVLFS_TEST_URING=1 \
	/usr/bin/python3 -m pytest -q ${URING_TESTS:-"$here/.."} "$@" \
	-k "not test_mount_fuse3_finds and not test_mount_t_fuse and not test_fstab_line \
	    and not test_daemonized and not test_rootless_mount and not test_export_unreadable_upper"
