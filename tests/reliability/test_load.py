"""Load with bounded memory (issue 10, item 4), at reduced sizes; `agentrl bench reliability` runs the full ones
(256 sessions / 10k steps, 64 workers / 120 s). Servers run in their own processes, as deployed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentrl.reliability.load import api_load, env_load, memory_verdict

pytestmark = pytest.mark.slow


def test_env_server_64_sessions_1k_steps_zero_errors_bounded_memory() -> None:
    out = env_load(sessions=64, steps=1000)
    assert out["steps"] == 1000 and out["errors"] == 0, out["error_samples"]
    assert out["healthy_after"]
    assert out["rss_bounded"], out


def test_rollout_api_16_workers_20s_nothing_lost_or_duplicated_bounded_memory(tmp_path: Path) -> None:
    out = api_load(tmp_path, workers=16, duration_s=20.0)
    assert out["trajectories"] == out["jobs_enqueued"] > 100
    assert (out["trajectories_lost"], out["trajectories_duplicated"], out["errors"]) == (0, 0, 0), out
    assert out["healthy_after"]
    # After a warm-up round at the same concurrency the server's RSS stays within the margin (docs/reliability.md,
    # "Rollout API memory"): collect pages no longer parse and re-serialise every stored trajectory.
    assert out["rss_bounded"], out


def test_memory_verdict_flags_growth_beyond_the_margin() -> None:
    assert memory_verdict(100.0, 150.0, 160.0)["rss_bounded"]
    assert not memory_verdict(100.0, 200.0, 200.0)["rss_bounded"]  # +100 MiB > max(64, 25 %)
    assert not memory_verdict(1000.0, 1300.0, 1300.0)["rss_bounded"]  # +300 MiB > 250 MiB (25 %)
