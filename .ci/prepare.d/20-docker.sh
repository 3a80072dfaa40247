#!/usr/bin/env bash
# Docker engine for the compose smoke test: Debian's docker.io + docker-compose (v1; the v2 plugin is not in
# Debian 12), debootstrap for the local base image (Docker Hub is unreachable on these machines).
set -euo pipefail
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  # No init system on CI machines: run dockerd directly, log to a file, wait until it answers.
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker info --format 'docker {{.ServerVersion}} storage={{.Driver}} cgroup={{.CgroupVersion}}'
