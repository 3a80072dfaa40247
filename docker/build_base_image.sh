#!/usr/bin/env bash
# Build the local base image for every agentrl container (Docker Hub is unreachable on these machines):
#   debootstrap (Debian bookworm minbase) + python3 venv on PATH + bubblewrap/util-linux (sandbox) +
#   the host's CA bundle (pip behind TLS interception) + wheels prepared on the host for the torch-free
#   stack, with PIP_NO_INDEX/PIP_FIND_LINKS set so `pip install ...` in Dockerfiles is offline and fast.
# Elsewhere, skip this and build with --build-arg BASE_IMAGE=python:3.11-slim (Dockerfiles handle both).
#
# Usage: docker/build_base_image.sh [IMAGE]      (FORCE=1 rebuilds an existing image)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-${AGENTRL_BASE_IMAGE:-agentrl/base:bookworm}}
if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ "${FORCE:-0}" != 1 ]; then
  echo "base image $IMAGE exists (FORCE=1 to rebuild)"
  exit 0
fi
# Host pip (it has this machine's CA bundle and package mirrors). CI runs this before the venv exists, so
# fall back to the system pip, and last to the image's own pip (chroot, host DNS + CA bundle).
if [ -n "${PIP:-}" ]; then :
elif [ -x .venv/bin/pip ]; then PIP=.venv/bin/pip
elif python3 -m pip --version >/dev/null 2>&1; then PIP="python3 -m pip"
else PIP=chroot
fi
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOT=$(mktemp -d /tmp/agentrl-rootfs.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
start=$(date +%s)
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,bubblewrap,util-linux \
  bookworm "$ROOT" "$MIRROR" >/tmp/agentrl-debootstrap.log 2>&1 || { tail -20 /tmp/agentrl-debootstrap.log; exit 1; }
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
chroot "$ROOT" python3 -m venv /opt/venv
# Wheels for everything the torch-free images install (the env servers, tool_world, the rollout API).
mkdir -p "$ROOT/wheels"
REQS=("pydantic>=2.7,<3" "pyyaml>=6" "httpx>=0.27" "fastapi>=0.133,<0.137" "uvicorn>=0.30" "jsonschema>=4.20"
  "typer>=0.12" "rich>=13" "mcp>=1.20" "websockets>=12" "sqlalchemy>=2.0,<3" "psycopg[binary]>=3.2,<4"
  "pip" "setuptools" "wheel")
if [ "$PIP" = chroot ]; then
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  chroot "$ROOT" env PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/venv/bin/pip download -q \
    --only-binary=:all: -d /wheels "${REQS[@]}" 2>/tmp/agentrl-pip-download.log \
    || { tail -20 /tmp/agentrl-pip-download.log; exit 1; }
else
  $PIP download -q --only-binary=:all: -d "$ROOT/wheels" "${REQS[@]}" 2>/tmp/agentrl-pip-download.log \
    || { tail -20 /tmp/agentrl-pip-download.log; exit 1; }
fi
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc "$ROOT"/usr/share/man
tar -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_NO_INDEX=1' \
  --change 'ENV PIP_FIND_LINKS=/wheels' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null
echo "built $IMAGE in $(( $(date +%s) - start ))s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
