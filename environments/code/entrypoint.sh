#!/bin/sh
# Container entrypoint for the code env. Docker hides parts of /proc behind overmounts (masked paths), and
# the kernel then refuses the fresh /proc that every bubblewrap jail mounts. With CAP_SYS_ADMIN, granted by
# compose.yaml for this step only, remove those overmounts; then drop SYS_ADMIN from the bounding set so the
# server (and everything it starts) can never regain it. Without the capability the overmounts stay, the
# sandbox probe fails and the server refuses to run code (fail closed).
set -eu
if [ "$(id -u)" = 0 ]; then
  grep ' /proc/' /proc/self/mounts | cut -d' ' -f2 | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || true
  done
  exec setpriv --bounding-set=-sys_admin --inh-caps=-all -- "$@"
fi
exec "$@"
