#!/usr/bin/env bash
# A Docker engine for the image tests (tests/test_images.py), from Debian's packages, on a machine
# that reaches no container registry: images are built FROM a local debootstrap base image.
set -euo pipefail
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  # No bridge, no iptables: every container uses the host network (loopback only).
  nohup dockerd --bridge=none --iptables=false >/tmp/tp4-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker info --format 'Docker engine {{.ServerVersion}} running' || { tail -20 /tmp/tp4-dockerd.log; exit 1; }
