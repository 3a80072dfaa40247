"""`agentrl bench envs` machinery at toy sizes (the numbers themselves are not asserted: no timed tests)."""

from __future__ import annotations

import shutil

import pytest

from agentrl.bench import envs


@pytest.mark.slow
def test_server_bench_and_load_driver_run_clean():
    r = envs.bench_server(
        "environments.protocol.demo:create_app", sessions=4, steps=40, load_sessions=16, load_steps=64
    )
    assert r["errors"] == 0 and r["load_errors"] == 0 and r["load_steps"] == 64
    assert r["steps_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_sandbox_bench_runs():
    r = envs.bench_sandbox(runs=3, concurrent_runs=4, workers=2)
    assert r["sandbox_errors"] == 0 and r["sandbox_leftover_processes"] == 0
    assert r["sandbox_p50_ms"] > 0 and r["sandbox_exec_per_s"] > 0


def test_schema_shaped_arguments():
    import random

    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"enum": ["x", "y"]},
            "c": {"type": ["string", "null"]},
        },
        "required": ["a", "b", "c"],
    }
    args = envs._args_for(schema, random.Random(0))
    assert args["a"] == 1 and args["b"] in ("x", "y") and args["c"] == "x"
