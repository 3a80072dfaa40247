#!/usr/bin/env bash
# Headless Chromium (Debian's package) for the test that opens the demo report and checks its images render.
set -euo pipefail
if ! command -v chromium >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
chromium --version
