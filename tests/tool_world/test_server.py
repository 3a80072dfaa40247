"""tool_world over HTTP: a real uvicorn server driven by the protocol's EnvClient, and the CLI entry."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from environments.protocol import EnvClient, EnvClientError, ServerSettings
from environments.tool_world.server import ToolWorldEnv, builtin_tasks, create_app

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(app) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


TASKS = builtin_tasks(per_template=1)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with _serve(create_app(ServerSettings(token="s3cret"), tasks=TASKS)) as u:
        yield u


def _play(env: EnvClient, task, seed: int = 0) -> tuple[float, dict, list]:
    obs = env.reset(task.model_dump(mode="json"), seed=seed)
    transcript = [m.model_dump(exclude_none=True) for m in obs.messages]
    if task.vague and obs.messages[-1].content != task.user:
        res = env.step(obs.session_id, {"final_answer": "Which one?"})
        transcript += [m.model_dump(exclude_none=True) for m in res.messages]
    for i, g in enumerate(task.gold):
        for _ in range(3):
            call = {"id": f"functions.{g.name}:{i}", "name": g.name, "arguments": json.dumps(g.arguments)}
            res = env.step(obs.session_id, {"tool_calls": [call]})
            transcript += [m.model_dump(exclude_none=True) for m in res.messages]
            kinds = [e["kind"] for e in res.info.get("tool_errors", [])]
            if "transient" not in kinds and "partial" not in res.messages[0].content:
                break
    res = env.step(obs.session_id, {"final_answer": task.answer})
    assert res.done
    return res.reward, res.info, transcript


def test_inline_task_specs_play_to_reward_one_over_http(url):
    with EnvClient(url, token="s3cret") as env:
        for tid in ("bank.pay.heldout.0", "clinic.rebook.train.0", "home.room_temp.heldout.0"):
            reward, info, transcript = _play(env, TASKS[tid], seed=4)
            assert reward == 1.0 and info["state_ok"] and info["answer_ok"], (tid, info)
            tool_msgs = [m for m in transcript if m["role"] == "tool"]
            assert all(m["tool_call_id"].startswith("functions.") for m in tool_msgs)


def test_http_matches_in_process_session(url):
    task = TASKS["shop.cancel_and_move.train.0"].model_copy(update={"fail_rate": 0.5})
    with EnvClient(url, token="s3cret") as env:
        http_reward, _, http_transcript = _play(env, task, seed=9)
    local = ToolWorldEnv()
    obs = local.reset(task_spec=task.model_dump(mode="json"), seed=9)
    assert obs.messages[1].content == http_transcript[1]["content"]
    # the same seed gives the same failures: replay the HTTP tool calls in-process
    from environments.protocol import Action

    for m in http_transcript:
        if m["role"] == "tool":
            call = {"id": m["tool_call_id"], "name": m["name"], "arguments": None}
            args = next(g.arguments for g in task.gold if g.name == m["name"])
            call["arguments"] = json.dumps(args)
            res = local.step(Action(tool_calls=[call]))
            assert res.messages[0].content == m["content"]
    assert local.step(Action(final_answer=task.answer)).reward == http_reward == 1.0


def test_bad_calls_are_tool_errors_and_bad_requests_are_4xx(url):
    with EnvClient(url, token="s3cret") as env:
        obs = env.reset("shop.status.train.0")
        sid = obs.session_id
        bad = [
            {"id": "a", "name": "nope", "arguments": "{}"},
            {"id": "b", "name": "get_order", "arguments": "{oops"},
            {"id": "c", "name": "get_order", "arguments": '{"id": 5}'},
        ]
        res = env.step(sid, {"tool_calls": bad})
        assert [e["kind"] for e in res.info["tool_errors"]] == ["unknown_tool", "bad_json", "bad_args"]
        assert all(json.loads(m.content)["error"] for m in res.messages) and not res.done
        with pytest.raises(EnvClientError) as exc:
            env.reset({"id": "x", "domain": "d"})
        assert exc.value.status_code == 400 and "invalid task_spec" in exc.value.message
        with pytest.raises(EnvClientError) as exc:
            env.reset("no.such.task")
        assert exc.value.status_code == 404
    raw = json.dumps({"task_spec": TASKS["shop.status.train.0"].model_dump(mode="json")})
    raw = raw.replace('"user": "', '"user": "\\ud800', 1)  # a JSON escape for a lone surrogate
    r = httpx.post(
        url + "/sessions",
        content=raw,
        headers={"content-type": "application/json", "authorization": "Bearer s3cret"},
    )
    assert r.status_code == 400 and "invalid task_spec" in r.json()["error"]
    assert httpx.post(url + "/sessions", json={"task_id": "shop.status.train.0"}).status_code == 401


def test_step_limit_ends_the_episode_with_the_state_score(url):
    task = TASKS["shop.status.train.0"].model_copy(update={"max_steps": 2})
    with EnvClient(url, token="s3cret") as env:
        obs = env.reset(task.model_dump(mode="json"))
        call = {"tool_calls": [{"id": "x", "name": "get_order", "arguments": '{"id": "zz"}'}]}
        assert not env.step(obs.session_id, call).done
        res = env.step(obs.session_id, call)
        assert res.done and res.info["truncated"] and res.reward == 0.0


@pytest.mark.slow
def test_cli_serve_env_tool_world(tmp_path):
    port = _free_port()
    env = {**os.environ, "AGENTRL_ENV_TOKEN": ""}
    cmd = [sys.executable, "-m", "agentrl.cli.main", "serve", "env", "tool_world", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None:
                pytest.fail(f"server exited: {proc.stdout.read().decode()[-2000:]}")
            time.sleep(0.1)
        with EnvClient(url) as client:
            assert "shop.status.train.0" in client.metadata()["task_ids"]
            reward, _, _ = _play(client, builtin_tasks()["bank.balance.train.0"])
            assert reward == 1.0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_mcp_calls_run_in_the_session_world():
    import asyncio

    from mcp import Client

    task = TASKS["bank.deposit.train.0"]
    gold = task.gold[0]
    with _serve(create_app(ServerSettings(), tasks=TASKS)) as base:
        sid = httpx.post(base + "/sessions", json={"task_spec": task.model_dump(mode="json")}).json()[
            "session_id"
        ]

        async def main():
            async with Client(f"{base}/sessions/{sid}/mcp") as client:
                tools = (await client.list_tools()).tools
                assert [t.name for t in tools] == [t.name for t in task.tools]
                ok = await client.call_tool(gold.name, gold.arguments)
                assert not ok.is_error and json.loads(ok.content[0].text)["balance"] > 0
                bad = await client.call_tool(gold.name, {**gold.arguments, "id": "NOPE"})
                assert bad.is_error and "no account with id=NOPE" in bad.content[0].text

        asyncio.run(main())
        state = httpx.get(f"{base}/sessions/{sid}/state").json()["state"]
        assert state["tables"] == task.expected_state
        res = httpx.post(f"{base}/sessions/{sid}/step", json={"final_answer": task.answer}).json()
        assert res["reward"] == 1.0 and res["done"]
