#!/usr/bin/env bash
# Installs what `make test-podman` needs, from Debian's packages, if missing. Not part of
# scripts/install-deps.sh: this test is opt-in and CI does not run it.
set -euo pipefail
pkgs=(podman runc busybox-static fuse-overlayfs fuse3)
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
