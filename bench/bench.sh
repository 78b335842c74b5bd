#!/bin/bash
# Entry point of `make bench` (full), `make bench-quick` (quick) and `make bench-apps`
# (apps, apps-quick): installs what the harness needs from Debian's packages, builds ovlfs,
# then runs bench/run.py.
#   bench/bench.sh full|quick|apps|apps-quick [run.py options...]
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-quick}
shift || true

if [ "$(id -u)" != 0 ]; then
	echo "bench: must run as root (mounts, loop devices, drop_caches)" >&2
	exit 1
fi

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have fuse-overlayfs || need+=(fuse-overlayfs)
have fusermount3 || need+=(fuse3)
have fio || need+=(fio)
have mkfs.ext4 || need+=(e2fsprogs)
have losetup || need+=(mount)
have cc || need+=(gcc)
have make || need+=(make)
have tar || need+=(tar)
have git || need+=(git)
have setpriv || need+=(util-linux)
case " $* " in
*" --apt "*) have debootstrap || need+=(debootstrap) ;;   # make bench-apps APT=1
esac
have pkg-config || need+=(pkg-config)
pkg-config --exists fuse3 2>/dev/null || need+=(libfuse3-dev)
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || need+=(python3-matplotlib)
if [ ${#need[@]} -gt 0 ]; then
	echo "bench: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || true
	if ! apt-get install -y -qq "${need[@]}" >/tmp/ovlfs-bench-apt.log 2>&1; then
		# One by one, so that one missing package (say matplotlib) does not stop the rest;
		# without matplotlib the chart falls back to gnuplot, then to a built-in PNG writer.
		for p in "${need[@]}"; do
			apt-get install -y -qq "$p" >>/tmp/ovlfs-bench-apt.log 2>&1 ||
				echo "bench: could not install $p" >&2
		done
		/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || have gnuplot ||
			apt-get install -y -qq gnuplot-nox >>/tmp/ovlfs-bench-apt.log 2>&1 || true
	fi
fi

make build/ovlfs
exec /usr/bin/python3 bench/run.py --profile "$profile" --ovlfs build/ovlfs "$@"
