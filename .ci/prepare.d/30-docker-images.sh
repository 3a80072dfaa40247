#!/usr/bin/env bash
# Build the local base image (debootstrap + docker import) and the compose stack, so the docker smoke test
# in `make test` only starts containers. Reuses existing images: a rebuild costs only changed layers.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash docker/build_base_image.sh
docker-compose build
