#!/usr/bin/env bash
# Installs what `make test-podman` needs, from Debian's packages, if missing. Not part of
# `make deps`: this test is opt-in and CI does not run it.
set -euo pipefail
exec bash "$(dirname "$0")/../../scripts/install-deps.sh" podman runc busybox-static \
	fuse-overlayfs fuse3
