#!/usr/bin/env bash
# PostgreSQL server binaries for the rollout store's Postgres tests (tests/services start a throwaway cluster on
# loopback with initdb/pg_ctl as the `postgres` user; no system cluster is created or started here).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && id postgres >/dev/null 2>&1; then
  echo "postgres already installed: $(ls -d /usr/lib/postgresql/*/bin | head -1)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
mkdir -p /etc/postgresql-common
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
apt-get update -qq
apt-get install -y -qq postgresql util-linux >/dev/null
ls -d /usr/lib/postgresql/*/bin
