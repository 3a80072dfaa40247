"""Auth across the assembled platform (issue 10, item 3).

- With a token configured, every route of every server (route table, not just the OpenAPI document: MCP,
  OpenEnv WebSocket, docs pages) answers 401 without it, with a wrong one, or without the Bearer scheme.
- The token never appears in server logs, in the environment of sandboxed code, or in stored trajectories.
The rollout API's own log check is tests/services/test_client.py::test_tokens_never_appear_in_server_logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from agentrl.reliability.auth import audit_auth
from agentrl.reliability.servers import ALL_SERVERS, build
from tests.reliability.conftest import TOKEN, need_tool


@pytest.mark.parametrize("name", ALL_SERVERS)
def test_every_route_but_health_needs_the_token(name: str, tmp_path: Path) -> None:
    app, _ = build(name, tmp_path, token=TOKEN)
    checked, leaks = audit_auth(app, TOKEN)
    assert checked > 20  # the audit really walked the routes
    assert leaks == []


def test_token_never_reaches_env_server_logs(tmp_path: Path) -> None:
    from tests.rollout.helpers import free_port

    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "AGENTRL_ENV_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "environments.reasoning.server:create_app"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port), "--log-level", "debug"], env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        from environments.protocol import EnvClient

        with EnvClient(url, token=TOKEN, timeout=10, retries=40, backoff_s=0.25) as c:
            obs = c.reset()
            c.step(obs.session_id, {"final_answer": "7"})
        for bad in (f"Bearer {TOKEN}x", TOKEN, f"Basic {TOKEN}"):
            assert httpx.post(f"{url}/sessions", json={}, headers={"authorization": bad}).status_code == 401
        assert httpx.get(f"{url}/nope?token={TOKEN}").status_code == 401  # a token in a URL is not auth
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    text = log.read_text(errors="replace")
    assert "GET /health" in text or "POST /sessions" in text  # the log really recorded requests
    assert TOKEN not in text.replace(f"token={TOKEN}", "")  # only where the client itself put it in a URL


def test_token_never_reaches_sandboxed_code(monkeypatch: pytest.MonkeyPatch) -> None:
    need_tool("bwrap")
    from fastapi.testclient import TestClient

    from environments.code.server import create_app

    monkeypatch.setenv("AGENTRL_ENV_TOKEN", TOKEN)
    monkeypatch.setenv("AGENTRL_API_TOKEN", TOKEN + "-api")
    probe = "env; cat /proc/self/environ /proc/1/environ 2>/dev/null | tr '\\0' '\\n'; echo ENDPROBE"
    with TestClient(create_app()) as client:  # settings from the environment, as `agentrl serve` builds them
        auth = {"authorization": f"Bearer {TOKEN}"}
        sid = client.post("/sessions", json={"task_id": "add-two"}, headers=auth).json()["session_id"]
        calls = [
            {"id": "a", "name": "run_shell", "arguments": json.dumps({"command": probe})},
            {"id": "b", "name": "run_python", "arguments": '{"code": "import os; print(dict(os.environ))"}'},
        ]
        res = client.post(f"/sessions/{sid}/step", json={"tool_calls": calls}, headers=auth).json()
    text = str(res)
    assert "ENDPROBE" in text and "PATH" in text, text[:2000]  # the probe really ran in the jail
    assert TOKEN not in text


def test_token_never_reaches_stored_trajectories(tok, tmp_path: Path) -> None:
    from agentrl.engine.base import SamplingSpec
    from agentrl.rollout.agent_loop import AgentLoop
    from agentrl.rollout.episode import EpisodeSpec
    from environments.protocol import EnvClient, ServerSettings, create_env_app
    from environments.protocol.demo import KeyValueEnv
    from services.rollout_api.app import create_app
    from services.rollout_api.client import RolloutClient
    from tests.rollout.helpers import ScriptedEngine, call_text, serve

    def script(text: str, turn: int) -> str:
        return call_text("set_value", {"key": "color", "value": "blue"}) if turn == 1 else "blue<|im_end|>"

    db = tmp_path / "rollout.db"
    api_token = TOKEN + "-api"
    env_app = create_env_app(KeyValueEnv, ServerSettings(token=TOKEN))
    with serve(env_app) as (env_url, _), serve(create_app(str(db), token=api_token)) as (api_url, _):
        env = EnvClient(env_url, token=TOKEN, timeout=10)
        task = {"pairs": {"color": "blue"}, "ask": "color"}
        spec = EpisodeSpec(task=task, env=env, sampling=SamplingSpec(max_tokens=400), env_name=env_url)
        [traj] = AgentLoop(ScriptedEngine(tok, script), tok).run([spec])
        assert traj.env_reward == 1.0
        api = RolloutClient(api_url, api_token, worker_id="w")
        job = {
            "id": "job-1",
            "task": {"task_id": "t"},
            "env": {"endpoint": env_url, "name": "kv"},
            "sampling": {"temperature": 1.0, "max_tokens": 64},
            "policy_version": 0,
        }
        api.enqueue([job])
        [lease] = api.lease()
        body = traj.model_dump(mode="json") | {"id": "tr-job-1", "job_id": "job-1"}
        api.submit("job-1", lease.lease_id, body)
        stored = api.collect(since=0).items
        api.close()
    assert len(stored) == 1
    assert TOKEN not in traj.model_dump_json()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("rollout.db*"))
    assert b"tr-job-1" in raw  # the trajectory really is in the store's files
    assert TOKEN.encode() not in raw
