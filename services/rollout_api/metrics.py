"""Prometheus text rendering of the store metrics (GET /v1/metrics?format=prometheus)."""

from __future__ import annotations

from typing import Any

_HELP = {
    "queued": "Jobs waiting for a lease.",
    "leased": "Jobs currently leased to a worker.",
    "done": "Jobs with a stored trajectory.",
    "failed": "Jobs with a recorded failure.",
    "enqueued": "Jobs ever enqueued.",
    "leases_granted": "Leases ever granted.",
    "requeues": "Jobs requeued after a lease expired or a retryable failure.",
    "expired_failures": "Jobs failed because their lease expired at the attempt cap.",
    "submitted": "Trajectories stored.",
    "duplicates": "Identical resubmissions answered with duplicate=true.",
    "conflicts": "Submissions discarded because the job already had another outcome.",
    "worker_failures": "Jobs failed by a worker's fail call.",
    "lease_to_submit_p50_s": "Median seconds from lease grant to trajectory commit (last 1000).",
    "lease_to_submit_p90_s": "90th percentile seconds from lease grant to trajectory commit (last 1000).",
}
_GAUGES = {"queued", "leased", "done", "failed", "lease_to_submit_p50_s", "lease_to_submit_p90_s"}


def render_prometheus(m: dict[str, Any]) -> str:
    lines = []
    for name, help_text in _HELP.items():
        value = m.get(name)
        if value is None:
            continue
        metric = f"agentrl_rollout_{name}" if name in _GAUGES else f"agentrl_rollout_{name}_total"
        lines.append(f"# HELP {metric} {help_text}")
        lines.append(f"# TYPE {metric} {'gauge' if name in _GAUGES else 'counter'}")
        lines.append(f"{metric} {value}")
    return "\n".join(lines) + "\n"
