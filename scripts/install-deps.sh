#!/usr/bin/env bash
# Installs what building and testing ovlfs needs, from Debian's packages, if missing.
# With arguments, installs those packages instead (the opt-in tests' extra needs).
set -euo pipefail
pkgs=("$@")
[ $# -gt 0 ] || pkgs=(gcc make pkg-config libfuse3-dev liburing-dev fuse3 python3 python3-pytest attr zlib1g-dev tar
	clang libclang-rt-14-dev # the libFuzzer harnesses (tests/libfuzzer/)
	e2fsprogs btrfs-progs dmsetup # fault tests (tests/test_faults.py)
	fsverity # verity digests (tests/test_verity.py; skipped where the kernel lacks fs-verity)
	erofs-utils) # mkfs.erofs: an EROFS metadata layer (tests/test_erofs_composefs.py)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
