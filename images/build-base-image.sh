#!/usr/bin/env bash
# Build tp4's local base image with debootstrap + `docker import`, for machines that reach no
# container registry (only Debian's mirror and PyPI). The result is the BASE_IMAGE build argument
# of images/{controller,mlflow,trainer}/Dockerfile:
#
#   images/build-base-image.sh                 # -> tp4-base:bookworm-python3.11
#   docker build --network host --build-arg BASE_IMAGE=tp4-base:bookworm-python3.11 ...
#
# The host's CA bundle is copied in, so that pip and apt inside the image work behind the same
# TLS-intercepting proxy as the host. Needs root (debootstrap) and a running Docker engine.
# Where a registry is reachable, use the default BASE_IMAGE (python:3.11-slim-bookworm) instead.
set -euo pipefail

SUITE="${SUITE:-bookworm}"                         # Debian 12: its python3 is 3.11, as pyproject requires
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
IMAGE="${IMAGE:-tp4-base:${SUITE}-python3.11}"
HOST_CA_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
PACKAGES="python3,python3-venv,ca-certificates"

for tool in debootstrap docker tar; do
  command -v "$tool" >/dev/null || { echo "build-base-image: '$tool' is not installed (apt-get install debootstrap docker.io)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "build-base-image: debootstrap needs root" >&2; exit 1; }
[ -r "$HOST_CA_BUNDLE" ] || { echo "build-base-image: no CA bundle at $HOST_CA_BUNDLE" >&2; exit 1; }

rootfs="$(mktemp -d /var/tmp/tp4-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

echo ">> debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
  || { tail -30 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"

echo ">> host CA bundle -> /etc/ssl/certs/ca-certificates.crt (and kept across update-ca-certificates)"
install -m 0644 "$HOST_CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/host-bundle.crt"
install -m 0644 "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"

echo ">> trimming apt caches, docs and locales"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'en*' -exec rm -rf {} + 2>/dev/null || true
# Debian's own sources, so `apt-get update` works in derived images.
printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
  "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" >"$rootfs/etc/apt/sources.list"

echo ">> docker import -> $IMAGE"
tar -C "$rootfs" --numeric-owner -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' \
  --message "tp4 base: debootstrap $SUITE minbase + $PACKAGES" \
  - "$IMAGE" >/dev/null
docker image inspect "$IMAGE" --format '>> {{.RepoTags}} {{.Size}} bytes'
