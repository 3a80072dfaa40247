"""Real worker processes: `agentrl worker` killed with SIGKILL mid-job, and Ray actor workers (vLLM, slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rollout.helpers import serve

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def kv_job(i: int, endpoint: str) -> dict:
    return {
        "id": f"job-{i}",
        "task": {"task_spec": {"pairs": {"color": "blue"}, "ask": "color"}},
        "env": {"endpoint": endpoint, "name": "kv"},
        "sampling": {"temperature": 1.0, "max_tokens": 200},
        "policy_version": 0,
    }


@pytest.fixture
def api(tmp_path):
    from services.rollout_api.app import create_app

    with serve(create_app(str(tmp_path / "rollout.db"), token="", lease_s=4.0, reap_interval_s=0.5)) as (
        url,
        _,
    ):
        yield url


def test_worker_killed_mid_job_is_re_leased_exactly_once(api, tiny_ckpt, tmp_path):
    from transformers import AutoTokenizer

    from agentrl.rollout.worker import RolloutWorker, WorkerConfig
    from services.rollout_api.client import RolloutClient
    from tests.rollout.helpers import ScriptedEngine, call_text

    trainer = RolloutClient(api)
    trainer.enqueue([kv_job(0, "local:tests.rollout.slow_env:SlowKV")])
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "agentrl.cli.main",
        "worker",
        "--api",
        api,
        "--model",
        tiny_ckpt,
        "--max-jobs",
        "1",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 400
        while trainer.get_job("job-0")["state"] != "leased":
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "worker never leased the job"
            time.sleep(0.5)
        time.sleep(1.5)  # inside the slow env reset/step: mid-job
        assert trainer.get_job("job-0")["state"] == "leased"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert trainer.collect().items == []  # the dead worker submitted nothing

    tok = AutoTokenizer.from_pretrained(tiny_ckpt)
    engine = ScriptedEngine(
        tok,
        lambda text, turn: (
            call_text("set_value", {"key": "color", "value": "blue"}) if turn == 1 else "blue<|im_end|>"
        ),
    )
    second = RolloutWorker(RolloutClient(api), engine, tok, WorkerConfig(max_jobs=1))
    deadline = time.monotonic() + 60
    while second.run_once() == 0:  # the lease expires (no heartbeats), then the job is re-leased
        assert time.monotonic() < deadline, "job was never re-leased"
        time.sleep(0.5)
    items = trainer.collect().items
    assert [o.job_id for o in items] == ["job-0"] and items[0].trajectory.status.value == "ok"
    assert trainer.get_job("job-0")["attempts"] == 2


def test_ray_actor_workers_on_a_local_cluster(api, tiny_ckpt):
    import ray

    from agentrl.rollout.ray_workers import launch_ray_workers, run_ray_workers
    from services.rollout_api.client import RolloutClient

    trainer = RolloutClient(api)
    trainer.enqueue([kv_job(i, "local:agentrl.rollout.warmstart:ShortKV") for i in range(6)])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        actors = launch_ray_workers(1, api, model=tiny_ckpt, worker_config={"max_jobs": 4})
        [stats] = run_ray_workers(actors, idle_exit_s=2.0)
    finally:
        ray.shutdown()
    items = trainer.collect().items
    assert stats["submitted"] == 6 and sorted(o.job_id for o in items) == [f"job-{i}" for i in range(6)]
    for o in items:
        t = o.trajectory
        assert t.status.value in ("ok", "truncated") and sum(t.loss_mask) > 0
        assert len(t.token_ids) == len(t.logprobs) == len(t.loss_mask)
