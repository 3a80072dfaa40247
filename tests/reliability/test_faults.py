"""Fault injection cases of issue 10 item 1 that no component suite already covers.

Covered elsewhere (run by `make test`, counted by `agentrl bench reliability`, listed in docs/reliability.md):
- rollout worker SIGKILLed mid-job: tests/rollout/test_worker_process.py, tests/services/test_faults.py;
- rollout API SIGKILLed and restarted: tests/services/test_faults.py::test_api_sigkilled_mid_run_restarts...;
- trainer SIGKILLed and resumed: tests/train/test_resume.py;
- SQLite store full: tests/services/test_store.py::test_a_full_disk_fails_the_write_cleanly_and_names_the_store.
Here: an environment server SIGKILLed mid-rollout, an engine that accepts connections and never answers, and a
real full filesystem (a tiny tmpfs) under checkpoints, the partial-rollout buffer and the rollout API store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentrl.engine.base import EngineError, SamplingSpec
from agentrl.rollout.agent_loop import AgentLoop
from agentrl.rollout.envs import LocalEnv
from agentrl.rollout.episode import EpisodeSpec
from agentrl.schemas.trajectory import TrajectoryStatus
from environments.protocol.demo import KeyValueEnv
from tests.rollout.helpers import ScriptedEngine, call_text, free_port

TASK = {"pairs": {"color": "blue"}, "ask": "color"}


def good_script(text: str, turn: int) -> str:
    return call_text("set_value", {"key": "color", "value": "blue"}) if turn == 1 else "blue<|im_end|>"


def spec(env, **kw) -> EpisodeSpec:
    return EpisodeSpec(task=TASK, env=env, sampling=SamplingSpec(max_tokens=400), **kw)


@contextlib.contextmanager
def env_server_process() -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "environments.protocol.demo:create_app"]
    proc = subprocess.Popen([*cmd, "--port", str(port), "--log-level", "warning"], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.slow
def test_env_server_sigkilled_mid_rollout_fails_that_trajectory_and_the_run_continues(tok) -> None:
    from environments.protocol import EnvClient

    with env_server_process() as (url, proc):
        remote = EnvClient(url, timeout=5.0, retries=2, backoff_s=0.05)

        def script(text: str, turn: int) -> str:
            if turn == 2 and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)  # the env server dies while the policy is generating
                proc.wait(10)
            return good_script(text, turn)

        engine = ScriptedEngine(tok, script)
        trajs = AgentLoop(engine, tok).run(
            [spec(remote, env_name="kv-remote"), spec(LocalEnv(KeyValueEnv), env_name="kv-local")]
        )
    assert proc.returncode == -signal.SIGKILL
    killed, alive = trajs
    assert killed.status == TrajectoryStatus.failed
    assert "kv-remote" in killed.failure_reason and "step" in killed.failure_reason, killed.failure_reason
    assert alive.status == TrajectoryStatus.ok and alive.env_reward == 1.0  # the run went on


@pytest.mark.timeout(60)
def test_engine_that_never_answers_fails_fast_with_a_clear_message(tok) -> None:
    from agentrl.engine.openai_server import OpenAIServerEngine

    # A listening socket that never accepts: connections complete in the kernel backlog, requests never answer.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        engine = OpenAIServerEngine(url, model="policy", timeout_s=2.0)
        with pytest.raises(EngineError, match=r"did not answer /v1/completions within 2s") as err:
            AgentLoop(engine, tok).run([spec(LocalEnv(KeyValueEnv))])
        engine.close()
    assert url in str(err.value)


@contextlib.contextmanager
def tiny_fs(path: Path, size: str) -> Iterator[Path]:
    """A real filesystem of `size` bytes (tmpfs): writes past it fail with ENOSPC, as on a full disk."""
    path.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if res.returncode != 0:
        msg = f"cannot mount a tmpfs here ({res.stderr.decode().strip()}); needs root"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.slow
def test_checkpoint_on_a_full_disk_names_the_path_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    import torch

    from agentrl.train.checkpoint import load_latest, save_train_state

    with tiny_fs(tmp_path / "disk", "512k") as disk:
        root = disk / "ckpt"
        save_train_state(root, 1, {"w": torch.arange(1000.0)})
        with pytest.raises(OSError, match=r"could not write checkpoint .*step-000002") as err:
            save_train_state(root, 2, {"w": torch.zeros(400_000)})
        assert str(root) in str(err.value)
        assert not list(root.glob(".tmp-*"))  # the partial write was removed, freeing the space
        state = load_latest(root)
        assert state is not None and torch.equal(state["w"], torch.arange(1000.0))  # no corruption
        save_train_state(root, 3, {"w": torch.ones(10)})  # once space is free again, saving works
        assert torch.equal(load_latest(root)["w"], torch.ones(10))


@pytest.mark.slow
def test_partial_rollout_buffer_on_a_full_disk_names_the_file_and_keeps_the_old_one(
    tok, tmp_path: Path
) -> None:
    from agentrl.rollout.partial import PartialRolloutBuffer

    loop = AgentLoop(ScriptedEngine(tok, good_script), tok)
    with tiny_fs(tmp_path / "disk", "64k") as disk:
        path = disk / "partial.jsonl"
        buffer = PartialRolloutBuffer(path)
        buffer.run_iteration(loop, [spec(LocalEnv(KeyValueEnv))], policy_version=0, segment_tokens=8)
        before = path.read_text()
        assert before.count("\n") == 1
        (disk / "filler").write_bytes(b"\0" * (64 * 1024 - len(before.encode()) - 8192))
        with contextlib.suppress(OSError):
            (disk / "filler2").write_bytes(b"\0" * 65536)  # whatever is left
        many = [spec(LocalEnv(KeyValueEnv)) for _ in range(8)]
        with pytest.raises(OSError, match=rf"could not save partial rollouts to {path}"):
            buffer.run_iteration(loop, many, policy_version=1, segment_tokens=8)
        assert path.read_text() == before  # the old buffer file is intact, not truncated
        assert not path.with_suffix(".tmp").exists()
        assert len(PartialRolloutBuffer(path)) == 1


@pytest.mark.slow
def test_rollout_api_store_on_a_full_disk_answers_503_naming_the_store(tmp_path: Path) -> None:
    import sqlite3

    from fastapi.testclient import TestClient

    from services.rollout_api.app import create_app
    from tests.services.conftest import job, traj

    with tiny_fs(tmp_path / "disk", "1m") as disk:
        db = disk / "rollout.db"
        with TestClient(create_app(str(db), token="", reap_interval_s=0), raise_server_exceptions=False) as c:
            assert c.post("/v1/jobs", json={"jobs": [job(i) for i in range(60)]}).status_code == 200
            leased = c.post("/v1/jobs/lease", json={"worker_id": "w", "max_jobs": 60}).json()["jobs"]
            statuses = []
            for g in leased:
                jid = g["job"]["id"]
                body = {"worker_id": "w", "lease_id": g["lease_id"], "trajectory": traj(jid, n=6000)}
                r = c.post(f"/v1/jobs/{jid}/trajectory", json=body)
                statuses.append(r.status_code)
                if r.status_code != 200:
                    assert r.status_code == 503 and "rollout.db" in r.json()["detail"], r.text
                    break
            assert statuses[-1] == 503 and statuses[:-1] == [200] * (len(statuses) - 1)
            assert c.get("/health").status_code == 200
            stored = c.get("/v1/metrics").json()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            n = conn.execute("SELECT count(*) FROM trajectories").fetchone()[0]
        assert n == len(statuses) - 1 == stored["done"]  # every 200 is stored; the failed one left nothing
