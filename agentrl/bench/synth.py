"""`agentrl bench synth`: throughput of `agentrl synth` on the embedded default (issue #5 target).

Target: at least 5,000 accepted trajectories in at most 2 minutes on 2 cores. The pipeline is single-process
(procedural roles are pure Python), so the figure is per core; `quick` produces 500 for smoke tests. Output goes to
a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

TARGET_S = 120.0


def run(quick: bool = False) -> dict[str, Any]:
    from agentrl.synth.pipeline import run_synth

    target = 500 if quick else 5000
    with tempfile.TemporaryDirectory(prefix="agentrl-bench-synth-") as out:
        t0 = time.perf_counter()
        stats = run_synth({"target": target, "out_dir": out}, echo=None)
        wall = time.perf_counter() - t0
    return {
        "synth_accepted": stats["accepted"],
        "synth_target": target,
        "synth_wall_s": round(wall, 2),
        "synth_traj_per_s": round(stats["accepted"] / wall, 1),
        "synth_attempts": stats["attempts"],
        "synth_acceptance_rate": stats["acceptance_rate"],
        "synth_domains": stats["domains"],
        "synth_tools": stats["tools"],
        "synth_chars_mean": stats["chars_mean"],
        "synth_meets_target": stats["accepted"] >= target and wall <= TARGET_S * target / 5000,
        "cpu_count": os.cpu_count(),
    }
