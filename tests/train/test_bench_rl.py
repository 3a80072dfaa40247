"""`agentrl bench rl` runs both sides end to end (its numbers are recorded, not asserted: no timed tests)."""

import math

import pytest


@pytest.mark.slow
def test_bench_rl_quick_runs_both_trainers():
    from agentrl.bench.rl import run

    r = run(quick=True)
    for key in ("agentrl_step_s", "trl_step_s", "agentrl_success", "trl_success", "steps"):
        assert key in r and math.isfinite(r[key]), key
    assert r["steps"] == 4 and r["agentrl_step_s"] > 0 and r["trl_step_s"] > 0
    assert 0 <= r["agentrl_success"] <= 1 and 0 <= r["trl_success"] <= 1
