"""Session fixtures for rollout tests: the warm-started tiny tool policy (trained once per session)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def tool_ckpt(tmp_path_factory):
    """k2-tiny overfit to emit K2 tool calls (agentrl.rollout.warmstart); reuses AGENTRL_BENCH_CACHE if set."""
    from agentrl.bench import rollout as bench_rollout

    if not os.environ.get("AGENTRL_BENCH_CACHE"):
        bench_rollout.CACHE = tmp_path_factory.mktemp("bench_cache")
    return str(bench_rollout.tool_policy_checkpoint())


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A random-init k2-tiny checkpoint: enough for tests about jobs and processes, not about tool use."""
    from model.checkpoint import init_checkpoint

    return str(init_checkpoint("k2-tiny", tmp_path_factory.mktemp("tiny") / "ck", seed=0))
