"""The REST protocol: sessions, steps, tool errors, bad requests (4xx, never 5xx), auth, caps, timeouts."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from environments.protocol import (
    Action,
    ServerSettings,
    ToolCall,
    ToolRegistry,
    ToolSpec,
    create_env_app,
)
from environments.protocol.demo import KeyValueEnv


def _client(**settings) -> TestClient:
    return TestClient(create_env_app(KeyValueEnv, ServerSettings(**settings)))


def _call(cid: str, name: str, args: str) -> dict:
    return {"id": cid, "name": name, "arguments": args}


def test_episode_roundtrip_and_reward():
    with _client() as c:
        obs = c.post("/sessions", json={"task_id": "kv-2"}).json()
        sid = obs["session_id"]
        assert obs["task_id"] == "kv-2"
        assert [m["role"] for m in obs["messages"]] == ["system", "user"]
        assert {t["function"]["name"] for t in obs["tools"]} == {"set_value", "get_value", "list_keys"}
        calls = [
            _call("a", "set_value", '{"key": "city", "value": "Paris"}'),
            _call("b", "set_value", '{"key": "year", "value": "1889"}'),
        ]
        r = c.post(f"/sessions/{sid}/step", json={"tool_calls": calls}).json()
        assert [m["tool_call_id"] for m in r["messages"]] == ["a", "b"]
        assert r["done"] is False and "tool_errors" not in r["info"]
        st = c.get(f"/sessions/{sid}/state").json()
        assert st["state"]["store"] == {"city": "Paris", "year": "1889"} and st["step_count"] == 1
        r = c.post(f"/sessions/{sid}/step", json={"final_answer": "1889"}).json()
        assert r == {
            "messages": [],
            "reward": 1.0,
            "done": True,
            "info": {"state_ok": True, "answer_ok": True},
        }
        # a done episode refuses more steps, without touching the state
        r = c.post(f"/sessions/{sid}/step", json={"final_answer": "1889"})
        assert r.status_code == 409 and "done" in r.json()["error"]
        assert c.get(f"/sessions/{sid}/state").json()["total_reward"] == 1.0
        assert c.delete(f"/sessions/{sid}").status_code == 200
        assert c.get(f"/sessions/{sid}/state").status_code == 404


def test_wrong_answer_or_missing_state_gets_zero():
    with _client() as c:
        sid = c.post("/sessions", json={"task_spec": {"pairs": {"k": "v"}, "ask": "k"}}).json()["session_id"]
        r = c.post(f"/sessions/{sid}/step", json={"final_answer": "v"}).json()
        assert r["reward"] == 0.0 and r["info"] == {"state_ok": False, "answer_ok": True}


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (_call("x", "nope", "{}"), "unknown tool 'nope'"),
        (_call("x", "set_value", '{"key": "a", '), "malformed JSON"),
        (_call("x", "set_value", "[1, 2]"), "must be a JSON object"),
        (_call("x", "set_value", '{"key": "a"}'), "'value' is a required property"),
        (_call("x", "set_value", '{"key": 1, "value": "b"}'), "at key: 1 is not of type 'string'"),
        (_call("x", "set_value", '{"key": "a", "value": "b", "z": 1}'), "Additional properties"),
        (_call("x", "get_value", '{"key": "missing"}'), "no such key"),
    ],
)
def test_bad_tool_calls_are_tool_errors_not_http_errors(call, needle):
    with _client() as c:
        sid = c.post("/sessions", json={"task_id": "kv-1"}).json()["session_id"]
        r = c.post(f"/sessions/{sid}/step", json={"tool_calls": [call]})
        assert r.status_code == 200
        body = r.json()
        assert body["messages"][0]["role"] == "tool" and body["messages"][0]["content"].startswith("Error:")
        assert needle in body["messages"][0]["content"]
        assert body["info"]["tool_errors"][0]["id"] == "x"
        assert c.get(f"/sessions/{sid}/state").json()["state"]["store"] == {}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("post", "/sessions", {"task_id": "nope"}, 404, "unknown task 'nope'"),
        ("post", "/sessions", {"task_id": "kv-1", "task_spec": {}}, 422, "not both"),
        ("post", "/sessions", {"task_spec": {"pairs": {}}}, 400, "task_spec needs"),
        ("post", "/sessions", {"seed": -1}, 422, "seed"),
        ("post", "/sessions", {"bogus": 1}, 422, "bogus"),
        ("post", "/sessions/nope/step", {"final_answer": "x"}, 404, "unknown session 'nope'"),
        ("get", "/sessions/nope/state", None, 404, "unknown session"),
        ("delete", "/sessions/nope", None, 404, "unknown session"),
        ("get", "/tools?session_id=nope", None, 404, "unknown session"),
        ("get", "/no/such/route", None, 404, "Not Found"),
    ],
)
def test_bad_requests_get_clear_4xx(method, path, body, status, needle):
    with _client() as c:
        r = getattr(c, method)(path, json=body) if body is not None else getattr(c, method)(path)
        assert r.status_code == status, r.text
        assert needle in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "needs tool_calls"),
        ({"tool_calls": [], "final_answer": None}, "needs tool_calls"),
        ({"tool_calls": [_call("a", "list_keys", "{}")], "final_answer": "x"}, "not both"),
        ({"tool_calls": [_call("a", "list_keys", "{}"), _call("a", "list_keys", "{}")]}, "unique"),
        ({"tool_calls": [{"id": "a"}]}, "name"),
        ({"tool_calls": "nope"}, "tool_calls"),
        ({"final_answer": 3}, "final_answer"),
    ],
)
def test_malformed_actions_are_422_and_leave_state_alone(body, needle):
    with _client() as c:
        sid = c.post("/sessions", json={"task_id": "kv-1"}).json()["session_id"]
        c.post(
            f"/sessions/{sid}/step", json={"tool_calls": [_call("s", "set_value", '{"key":"k","value":"v"}')]}
        )
        r = c.post(f"/sessions/{sid}/step", json=body)
        assert r.status_code == 422 and needle in r.json()["error"]
        st = c.get(f"/sessions/{sid}/state").json()
        assert st["step_count"] == 1 and st["state"]["store"] == {"k": "v"} and not st["done"]


def test_non_json_body_is_422():
    with _client() as c:
        sid = c.post("/sessions", json={}).json()["session_id"]
        r = c.post(
            f"/sessions/{sid}/step", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422 and "JSON" in r.json()["error"]


class _ExplodingEnv(KeyValueEnv):
    """Its step mutates the store and then crashes: the server must roll the session back."""

    def step(self, action: Action):
        self.store["half"] = "written"
        if action.final_answer == "boom":
            raise RuntimeError("kaboom")
        return super().step(action)


def test_crashing_step_is_rolled_back():
    with TestClient(create_env_app(_ExplodingEnv, ServerSettings()), raise_server_exceptions=False) as c:
        sid = c.post("/sessions", json={"task_id": "kv-1"}).json()["session_id"]
        r = c.post(f"/sessions/{sid}/step", json={"final_answer": "boom"})
        assert r.status_code == 500 and "kaboom" in r.json()["error"]
        st = c.get(f"/sessions/{sid}/state").json()
        assert st["state"]["store"] == {} and st["step_count"] == 0 and not st["done"]
        assert c.post(f"/sessions/{sid}/step", json={"final_answer": "blue"}).status_code == 200


def test_bearer_token_required_when_configured():
    with _client(token="s3cret") as c:
        assert c.get("/health").status_code == 200
        for path in ("/metadata", "/tools", "/openapi.json", "/schema", "/state"):
            r = c.get(path)
            assert r.status_code == 401 and "bearer" in r.json()["error"]
        assert c.post("/sessions", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.post("/sessions", json={}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 201
        with pytest.raises(WebSocketDisconnect), c.websocket_connect("/ws") as ws:
            ws.receive_text()
        assert c.post("/mcp", json={}).status_code == 401


def test_session_cap_returns_429():
    with _client(max_sessions=2) as c:
        a = c.post("/sessions", json={}).json()["session_id"]
        c.post("/sessions", json={})
        r = c.post("/sessions", json={})
        assert r.status_code == 429 and "too many sessions" in r.json()["error"]
        c.delete(f"/sessions/{a}")
        assert c.post("/sessions", json={}).status_code == 201


def test_idle_sessions_expire():
    with _client(idle_timeout_s=0.2) as c:
        sid = c.post("/sessions", json={}).json()["session_id"]
        time.sleep(0.5)
        r = c.get(f"/sessions/{sid}/state")
        assert r.status_code == 404 and "expired" in r.json()["error"]
        assert c.get("/health").json()["sessions"] == 0
        assert c.delete(f"/sessions/{sid}").status_code == 200  # idempotent close of an expired session


def test_metadata_tools_and_versioned_openapi():
    with _client() as c:
        md = c.get("/metadata").json()
        assert md["name"] == "kv" and md["protocol_version"] == "1.0" and md["task_ids"] == ["kv-1", "kv-2"]
        assert {"/sessions", "/reset", "/ws", "/mcp"} <= set(md["routes"])
        tools = c.get("/tools").json()
        assert tools["tools"][0]["type"] == "function"
        assert tools["mcp"][0]["inputSchema"] == tools["tools"][0]["function"]["parameters"]
        spec = c.get("/openapi.json").json()
        assert spec["info"]["version"].startswith("1.0+kv")
        assert "/sessions/{session_id}/step" in spec["paths"]
        body = spec["paths"]["/sessions/{session_id}/step"]["post"]["requestBody"]["content"][
            "application/json"
        ]
        assert body["schema"]["$ref"] == "#/components/schemas/Action"
        assert "tool_calls" in spec["components"]["schemas"]["Action"]["properties"]
        assert "ToolCall" in spec["components"]["schemas"]


def test_concurrent_steps_on_one_session_are_serialised():
    app = create_env_app(KeyValueEnv, ServerSettings())
    sm = app.state.env_server.sessions

    async def main():
        from environments.protocol import ResetRequest

        s, _ = await sm.create(ResetRequest())
        acts = [
            Action(
                tool_calls=[ToolCall(id="c", name="set_value", arguments=f'{{"key": "k{i}", "value": "v"}}')]
            )
            for i in range(30)
        ]
        await asyncio.gather(*(sm.step(s.id, a) for a in acts))
        return await sm.state(s.id)

    st = asyncio.run(main())
    assert st.step_count == 30 and len(st.state["store"]) == 30


def test_tool_registry_rejects_bad_specs_and_builds_schemas():
    with pytest.raises(ValueError, match="invalid JSON Schema"):
        ToolSpec("t", "d", {"type": "object", "properties": {"a": {"type": "nonsense"}}})
    with pytest.raises(ValueError, match="type 'object'"):
        ToolSpec("t", "d", {"type": "array"})
    with pytest.raises(ValueError, match="tool name"):
        ToolSpec("bad name!", "d", {"type": "object"})
    reg = ToolRegistry()

    @reg.tool()
    def add(a: int, b: int = 2) -> int:
        """Add two numbers."""
        return a + b

    with pytest.raises(ValueError, match="registered twice"):
        reg.add(ToolSpec("add", "", {"type": "object"}))
    fn = reg.openai()[0]["function"]
    assert fn["description"] == "Add two numbers." and fn["parameters"]["required"] == ["a"]
    msg, err = reg.call(ToolCall(id="1", name="add", arguments='{"a": 1}'))
    assert err is None and msg.content == "3"
    # OpenAI's nested tool-call shape and dict arguments are accepted
    call = ToolCall.model_validate(
        {"id": "2", "type": "function", "function": {"name": "add", "arguments": {"a": 5}}}
    )
    assert reg.call(call)[0].content == "7"
