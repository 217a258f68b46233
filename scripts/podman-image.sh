#!/usr/bin/env bash
# Builds, once, the offline base image of the docker runtime's tests (tests/test_docker_runtime.py) with podman:
# Debian bookworm (minbase) with python3 (as `python` too), pytest and git, made by debootstrap from Debian packages,
# because no container registry may be reachable. Installs podman, runc and debootstrap with apt-get when missing.
# Usage: scripts/podman-image.sh [IMAGE]     (default: $OEC_PODMAN_IMAGE or localhost/oec-base:bookworm)
# Nothing of the user's is changed: podman reads scripts/containers.conf (CONTAINERS_CONF) only for this script,
# the tests, and whoever exports it; an image that exists already is kept (a few hundred ms to check).
set -euo pipefail
IMAGE=${1:-${OEC_PODMAN_IMAGE:-localhost/oec-base:bookworm}}
MIRROR=${OEC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/containers.conf}
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

"$(dirname "$0")/apt-tools.sh" podman=podman runc=runc debootstrap=debootstrap || {
  echo "oec: the docker runtime's tests run on podman: see docs/containers.md" >&2; exit 1; }

if podman image exists "$IMAGE"; then
  exit 0
fi
echo "oec: building the base image $IMAGE from Debian packages (debootstrap, 1-2 min, ~300 MB)"
rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/oec-rootfs.XXXXXX")
trap '$SUDO rm -rf "$rootfs"' EXIT
$SUDO debootstrap --variant=minbase --include=python3,python3-pytest,git bookworm "$rootfs" "$MIRROR" \
  > "$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; echo "oec: debootstrap failed (log: $rootfs.log)" >&2; exit 1; }
rm -f "$rootfs.log"
# the verifier and agents run `python`; Debian names it python3 only
$SUDO ln -sf python3 "$rootfs/usr/bin/python"
$SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
# imported under a temporary tag and renamed when complete, so an interrupted build never leaves a half image
tmp_tag="$IMAGE-partial-$$"
$SUDO tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["bash"]' - "$tmp_tag" >/dev/null
podman tag "$tmp_tag" "$IMAGE"
podman untag "$tmp_tag" "$tmp_tag"  # with one argument, untag would remove every name of the image
echo "oec: built $IMAGE"
