"""Best-effort memory cgroup per sandbox slot: caps a jail's *total* memory.

RLIMIT_AS bounds each process, so a jail could still take nproc x memory_mb with many processes. Where
the server may create cgroups (root on a host with cgroup v1 `memory` or v2 `memory.max`), each uid slot
gets its own cgroup with `memory_mb` as the limit and every jail is started inside it (a tiny /bin/sh
wrapper joins the cgroup before exec, so no process can fork before the move). Inside docker the cgroup
tree is usually read-only; the container's own memory limit (compose.yaml) is the cap there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


class MemoryCgroups:
    def __init__(self, name: str = "agentrl-sandbox") -> None:
        self.root: Path | None = None
        self.limit_file = ""
        for base, limit_file in ((V1, "memory.limit_in_bytes"), (V2, "memory.max")):
            if not (base / "cgroup.procs").exists() or (
                limit_file == "memory.max" and not (V2 / "cgroup.controllers").exists()
            ):
                continue
            root = base / name
            try:
                root.mkdir(exist_ok=True)
                if limit_file == "memory.max":
                    (V2 / "cgroup.subtree_control").write_text("+memory")
                probe = root / "probe"
                probe.mkdir(exist_ok=True)
                (probe / limit_file).write_text(str(64 << 20))
                probe.rmdir()
            except OSError as exc:
                log.info("no memory cgroup at %s (%s): per-process RLIMIT_AS only", base, exc)
                continue
            self.root, self.limit_file = root, limit_file
            break

    @property
    def available(self) -> bool:
        return self.root is not None

    def prepare(self, slot: int, memory_mb: int) -> str | None:
        """The cgroup.procs path for `slot` with the limit set, or None when unavailable."""
        if self.root is None:
            return None
        group = self.root / f"slot-{slot}"
        try:
            group.mkdir(exist_ok=True)
            (group / self.limit_file).write_text(str(memory_mb << 20))
        except OSError as exc:
            log.warning("memory cgroup for slot %d unavailable: %s", slot, exc)
            return None
        return os.fspath(group / "cgroup.procs")


def join_prefix(procs_file: str) -> list[str]:
    """argv prefix: join the cgroup, then exec the rest (the shell is replaced, no extra process)."""
    return ["/bin/sh", "-c", f'echo $$ > {procs_file} && exec "$@"', "sh"]
