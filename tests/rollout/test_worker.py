"""Rollout worker against the real rollout API (uvicorn + SQLite): lease, heartbeat, submit, failures.

The engine is the scripted stand-in (tests/rollout/helpers.py): these tests are about the job protocol.
"""

from __future__ import annotations

import pytest

from agentrl.engine.base import EngineError
from agentrl.rollout.worker import RolloutWorker, WorkerConfig
from model.special_tokens import IM_END
from tests.rollout.helpers import ScriptedEngine, call_text, serve

KV = "local:environments.protocol.demo:KeyValueEnv"


@pytest.fixture(scope="module")
def tok():
    from model.tokenizer import default_corpus, train_tokenizer

    return train_tokenizer(default_corpus(), vocab_size=2048)


@pytest.fixture
def api(tmp_path):
    from services.rollout_api.app import create_app

    with serve(create_app(str(tmp_path / "rollout.db"), token="", lease_s=5.0, reap_interval_s=0.5)) as (
        url,
        _,
    ):
        yield url


def script(text: str, turn: int) -> str:
    if turn == 1:
        return call_text("set_value", {"key": "color", "value": "blue"})
    return "blue" + IM_END


def job(i: int, endpoint: str = KV) -> dict:
    return {
        "id": f"job-{i}",
        "task": {"task_spec": {"pairs": {"color": "blue"}, "ask": "color"}},
        "env": {"endpoint": endpoint, "name": "kv"},
        "sampling": {"temperature": 1.0, "max_tokens": 200},
        "policy_version": 7,
        "group_id": "g0",
    }


def outcomes(client) -> list:
    return client.collect(since=0, limit=1000).items


def test_worker_runs_jobs_and_submits_once(api, tok):
    from services.rollout_api.client import RolloutClient

    trainer = RolloutClient(api)
    trainer.enqueue([job(i) for i in range(5)])
    worker = RolloutWorker(RolloutClient(api), ScriptedEngine(tok, script), tok, WorkerConfig(max_jobs=3))
    stats = worker.run(idle_exit_s=0.0)
    assert stats.submitted == 5 and stats.rounds == 2
    items = outcomes(trainer)
    assert sorted(o.job_id for o in items) == [f"job-{i}" for i in range(5)]
    t = items[0].trajectory
    assert t.status.value == "ok" and t.env_reward == 1.0 and t.job_id == t.id and t.group_id == "g0"
    assert t.policy_versions == [0]  # the engine's version, not the one the trainer asked for


def test_env_down_submits_failed_trajectory_and_continues(api, tok):
    from services.rollout_api.client import RolloutClient

    trainer = RolloutClient(api)
    trainer.enqueue([job(0, endpoint="http://127.0.0.1:9"), job(1)])
    worker = RolloutWorker(
        RolloutClient(api), ScriptedEngine(tok, script), tok, WorkerConfig(max_jobs=2, env_timeout_s=2.0)
    )
    worker.run(idle_exit_s=0.0)
    by_id = {o.job_id: o for o in outcomes(trainer)}
    assert by_id["job-0"].trajectory.status.value == "failed"
    assert "during reset" in by_id["job-0"].trajectory.failure_reason
    assert by_id["job-1"].trajectory.status.value == "ok"


def test_engine_failure_hands_jobs_back_and_raises(api, tok):
    from services.rollout_api.client import RolloutClient

    class Dead:
        def generate(self, prompts, sampling):
            raise TimeoutError("no answer from engine")

    trainer = RolloutClient(api)
    trainer.enqueue([job(0)])
    worker = RolloutWorker(RolloutClient(api), Dead(), tok, WorkerConfig(max_jobs=1))
    with pytest.raises(EngineError, match="no answer from engine"):
        worker.run_once()
    view = trainer.get_job("job-0")
    assert view["state"] == "queued" and view["attempts"] == 1  # handed back for another worker
