"""OpenEnv-compatible routes and the MCP endpoint (driven with the real `mcp` client over HTTP)."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from environments.protocol import ServerSettings, create_env_app
from environments.protocol.demo import KeyValueEnv


def test_openenv_http_reset_step_state_schema():
    with TestClient(create_env_app(KeyValueEnv, ServerSettings())) as c:
        assert c.post("/step", json={"action": {"final_answer": "x"}}).status_code == 404  # no reset yet
        r = c.post("/reset", json={"seed": 3, "task_id": "kv-1"}).json()
        assert r["done"] is False and r["reward"] is None
        assert r["observation"]["messages"][1]["role"] == "user" and r["observation"]["tools"]
        sid = r["metadata"]["session_id"]
        call = {"id": "1", "name": "set_value", "arguments": json.dumps({"key": "color", "value": "blue"})}
        s = c.post("/step", json={"action": {"tool_calls": [call]}}).json()
        assert s["observation"]["messages"][0]["content"] == "ok" and s["done"] is False
        st = c.get("/state").json()
        assert st["episode_id"] == sid and st["step_count"] == 1
        bad = c.post("/step", json={"action": {"tool_calls": []}})
        assert bad.status_code == 400 and "needs tool_calls" in bad.json()["error"]
        s = c.post("/step", json={"action": {"final_answer": "blue"}, "session_id": sid}).json()
        assert s["reward"] == 1.0 and s["done"] is True
        schema = c.get("/schema").json()
        assert (
            set(schema) == {"action", "observation", "state"}
            and "tool_calls" in schema["action"]["properties"]
        )
        # a second /reset replaces the default session
        c.post("/reset", json={})
        assert c.get(f"/sessions/{sid}/state").status_code == 404


def test_openenv_websocket_session():
    with TestClient(create_env_app(KeyValueEnv, ServerSettings())) as c, c.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"type": "step", "data": {"action": {"final_answer": "x"}}}))
        assert json.loads(ws.receive_text())["type"] == "error"
        ws.send_text(json.dumps({"type": "reset", "data": {"task_id": "kv-1"}}))
        obs = json.loads(ws.receive_text())
        assert obs["type"] == "observation" and obs["data"]["observation"]["task_id"] == "kv-1"
        call = {"id": "1", "name": "set_value", "arguments": '{"key": "color", "value": "blue"}'}
        ws.send_text(json.dumps({"type": "step", "data": {"action": {"tool_calls": [call]}}}))
        assert json.loads(ws.receive_text())["data"]["done"] is False
        for junk in (
            "not json",
            "[1]",
            json.dumps({"type": "dance"}),
            json.dumps({"type": "step", "data": {}}),
        ):
            ws.send_text(junk)
            err = json.loads(ws.receive_text())
            assert err["type"] == "error" and err["data"]["message"]
        ws.send_text(json.dumps({"type": "state"}))
        st = json.loads(ws.receive_text())
        assert st["type"] == "state" and st["data"]["state"]["store"] == {"color": "blue"}
        ws.send_text(json.dumps({"type": "step", "data": {"action": {"final_answer": "blue"}}}))
        assert json.loads(ws.receive_text())["data"]["reward"] == 1.0
        ws.send_text(json.dumps({"type": "close"}))
    # the websocket's session is closed with the connection
    assert c.app.state.env_server.sessions.sessions == {}


@pytest.mark.slow
def test_mcp_client_lists_and_calls_tools_in_a_session(kv_url):
    import httpx
    from mcp import Client

    async def main():
        async with Client(kv_url + "/mcp") as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert names == ["set_value", "get_value", "list_keys"]
            res = await client.call_tool("list_keys", {})
            assert res.is_error and "POST /sessions" in res.content[0].text
        sid = httpx.post(kv_url + "/sessions", json={"task_id": "kv-1"}).json()["session_id"]
        async with Client(f"{kv_url}/sessions/{sid}/mcp") as client:
            tools = (await client.list_tools()).tools
            assert tools[0].input_schema["required"] == ["key", "value"]
            ok = await client.call_tool("set_value", {"key": "color", "value": "blue"})
            assert not ok.is_error and ok.content[0].text == "ok"
            bad = await client.call_tool("set_value", {"key": 5})
            assert bad.is_error and "invalid arguments" in bad.content[0].text
            unknown = await client.call_tool("fly", {})
            assert unknown.is_error and "unknown tool" in unknown.content[0].text
        # MCP and REST share the episode
        st = httpx.get(f"{kv_url}/sessions/{sid}/state").json()
        assert st["state"]["store"] == {"color": "blue"} and st["step_count"] == 3
        r = httpx.post(f"{kv_url}/sessions/{sid}/step", json={"final_answer": "blue"}).json()
        assert r["reward"] == 1.0

    asyncio.run(main())
    assert httpx.get(kv_url + "/health").json()["status"] == "healthy"
