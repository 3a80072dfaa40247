"""The tool_world step path's latency work must not change any answer.

- the fast step route answers exactly like the protocol's FastAPI route (success and every error status);
- `accepts_fast` never accepts arguments that jsonschema rejects;
- snapshot/restore (draw-counted RNG) puts a session back exactly when a step fails midway;
- the GC freeze lasts only while the server runs.
"""

from __future__ import annotations

import functools
import gc
import itertools
import json
import random

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from environments.protocol import ServerSettings, create_env_app
from environments.tool_world import ops, session
from environments.tool_world.server import ToolWorldEnv, builtin_tasks, create_app
from environments.tool_world.session import DrawCountingRandom, accepts_fast

TASKS = builtin_tasks()
TASK = sorted(TASKS)[0]


def test_fast_create_hits_the_session_cap_like_the_protocol_route():
    fast, plain = _apps(ServerSettings(max_sessions=2))
    with fast, plain:
        got = []
        for c in (fast, plain):
            got.append(
                [
                    (r.status_code, r.json().get("error"))
                    for r in (c.post("/sessions", json={}) for _ in range(3))
                ]
            )
        assert got[0] == got[1] and got[0][2][0] == 429


def _apps(settings: ServerSettings) -> tuple[TestClient, TestClient]:
    plain = create_env_app(functools.partial(ToolWorldEnv, TASKS), settings)  # the protocol's own routes
    return TestClient(create_app(settings, tasks=TASKS)), TestClient(plain)


def _exchange(client: TestClient, headers: dict[str, str]) -> list[tuple[int, object]]:
    out = []
    r = client.post("/sessions", json={"task_id": TASK, "seed": 3}, headers=headers)
    out.append((r.status_code, r.json() if r.status_code < 400 else r.json()["error"]))
    if r.status_code >= 400:
        return out
    sid = r.json()["session_id"]
    tool = r.json()["tools"][0]["function"]["name"]
    bodies = [
        {"tool_calls": [{"id": "1", "name": tool, "arguments": json.dumps({"id": "nope"})}]},
        {"tool_calls": [{"id": "2", "name": tool, "arguments": "{not json"}]},
        {"tool_calls": [{"id": "3", "name": "no_such_tool", "arguments": "{}"}]},
        {"tool_calls": [{"id": "4", "name": tool, "arguments": json.dumps({"id": 5})}]},
        {"tool_calls": "not a list"},  # 422 from the body schema
        {"final_answer": "done"},
        {"final_answer": "again"},  # 409: the episode is done
    ]
    for body in bodies:
        r = client.post(f"/sessions/{sid}/step", json=body, headers=headers)
        payload = r.json()
        out.append((r.status_code, payload if r.status_code < 400 else payload["error"].replace(sid, "SID")))
    r = client.post(f"/sessions/{sid}/step", content=b"{broken", headers=headers)
    out.append((r.status_code, r.json()["error"].replace(sid, "SID")))
    r = client.post("/sessions/unknown/step", json={"final_answer": "x"}, headers=headers)
    out.append((r.status_code, r.json()["error"]))
    r = client.delete(f"/sessions/{sid}", headers=headers)
    out.append((r.status_code, r.json()))
    for path in (f"/sessions/{sid}", "/sessions/unknown"):  # closed: 404 (idempotent only when expired)
        r = client.delete(path, headers=headers)
        out.append((r.status_code, r.json()["error"].replace(sid, "SID")))
    # create: every kind of body; the fast route handles valid JSON objects, FastAPI the rest
    creates = [
        b"",
        b"{}",
        b"null",
        b"[]",
        b"{bad json",
        json.dumps({"task_id": "nope"}).encode(),
        json.dumps({"task_id": TASK, "task_spec": {}}).encode(),
        json.dumps({"seed": -1}).encode(),
        json.dumps({"seed": "7"}).encode(),
        json.dumps({"seed": 1.0}).encode(),
        json.dumps({"seed": True}).encode(),
        json.dumps({"extra": 1}).encode(),
        json.dumps({"task_spec": {"id": "x"}}).encode(),
        json.dumps({"task_id": TASK, "seed": 9}).encode(),
        json.dumps({"task_id": "ü" * 600}).encode(),
        b"[" * 100_000 + b"]" * 100_000,  # nesting past the recursion limit
        b'{"task_spec": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001,
    ]
    for body in creates:
        r = client.post("/sessions", content=body, headers={**headers, "content-type": "application/json"})
        payload = r.json()
        if r.status_code == 201:
            client.delete(f"/sessions/{payload.pop('session_id')}", headers=headers)
            if b"seed" not in body and b"task_id" not in body:  # no seed: a random built-in task
                payload = sorted(payload)
        out.append((r.status_code, payload if r.status_code < 400 else payload["error"]))
    return out


@pytest.mark.parametrize("token", [None, "secret"])
def test_fast_step_route_answers_like_the_protocol_route(token):
    settings = ServerSettings(token=token, max_body_bytes=4096)
    fast, plain = _apps(settings)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with fast, plain:
        a, b = _exchange(fast, headers), _exchange(plain, headers)
        for x, y in zip(a, b, strict=True):
            if isinstance(x[1], dict):
                x[1].pop("session_id", None), y[1].pop("session_id", None)
        assert a == b
        assert {s for s, _ in a} >= {200, 201, 400, 404, 409, 422}
        if token:  # no token: 401 on both
            r1 = fast.post("/sessions/x/step", json={"final_answer": "x"})
            r2 = plain.post("/sessions/x/step", json={"final_answer": "x"})
            assert r1.status_code == r2.status_code == 401 and r1.json() == r2.json()
        big = {"final_answer": "x" * 10_000}  # over max_body_bytes: 413 before the route
        r1 = fast.post("/sessions/x/step", json=big, headers=headers)
        r2 = plain.post("/sessions/x/step", json=big, headers=headers)
        assert r1.status_code == r2.status_code == 413 and r1.json() == r2.json()
        # the step route is still documented
        assert "/sessions/{session_id}/step" in fast.get("/openapi.json", headers=headers).json()["paths"]


SCHEMAS = [
    {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
    {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "number"}}, "required": ["n"]},
    {"type": "object", "properties": {"s": {"enum": ["a", "b"]}, "f": {"type": "boolean"}}},
    {"type": "object", "properties": {"s": {"type": "string", "enum": ["a", "1"]}}, "required": ["s"]},
    {"type": "object", "properties": {"s": {"type": "string", "minLength": 3}}},  # unsupported: no fast path
    {"type": "object", "properties": {"e": {"enum": [1, True]}}},  # non-string enum: no fast path
    {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
]
VALUES = ["a", "b", "1", "", 1, 0, -3, 1.0, 2.5, True, False, None, [], {}, ["a"], {"a": 1}, "abcd"]


def test_fast_acceptance_never_accepts_what_jsonschema_rejects():
    keys = ["id", "n", "x", "s", "f", "e", "a", "zz"]
    checked = accepted = 0
    for schema in SCHEMAS:
        fast = accepts_fast(schema)
        validator = Draft202012Validator(schema)
        if set(json.dumps(schema)) and (
            "minLength" in json.dumps(schema) or "additional" in json.dumps(schema)
        ):
            assert fast is None
        if fast is None:
            continue
        for k1, k2 in itertools.combinations(keys, 2):
            for v1, v2 in itertools.product(VALUES, repeat=2):
                for args in ({}, {k1: v1}, {k1: v1, k2: v2}):
                    checked += 1
                    if fast(args):
                        accepted += 1
                        assert validator.is_valid(args), (schema, args)
    assert checked > 10_000 and accepted > 100  # the fast path does accept the common valid calls


def test_rng_draw_count_is_a_faithful_snapshot():
    a, b = random.Random("7:t"), DrawCountingRandom("7:t")
    assert [a.random() for _ in range(100)] == [b.random() for _ in range(100)]
    state = b.getstate()
    for _ in range(10):
        b.random()
    b.rewind(100)
    assert b.getstate() == state and b.draws == 100


def test_failed_step_restores_the_session_exactly(monkeypatch):
    env = ToolWorldEnv(TASKS)
    obs = env.reset(TASK, seed=5)
    tool = obs.tools[0]["function"]
    from agentrl.bench.envs import _args_for
    from environments.protocol import Action, ToolCall

    args = json.dumps(_args_for(tool["parameters"], random.Random(0)))  # schema-valid: reaches apply_op
    act = Action(tool_calls=[ToolCall(id="1", name=tool["name"], arguments=args)])
    env.step(act)  # some history first
    snap = env.snapshot()
    before = (
        json.dumps(env.session.state),
        len(env.session.calls),
        env.session.steps,
        env.session.rng.getstate(),
    )
    real = ops.apply_op

    def boom(op, state, *a, **k):  # a bug after the RNG draw and a half-applied write
        state.setdefault("_junk", []).append(1)
        next(iter(state.values()))[:0] = [{"id": "ghost"}]
        raise RuntimeError("bug")

    monkeypatch.setattr(session, "apply_op", boom)
    with pytest.raises(RuntimeError):
        for _ in range(20):  # enough calls that the failure happens after an RNG draw
            env.step(act)
    env.restore(snap)
    after = (
        json.dumps(env.session.state),
        len(env.session.calls),
        env.session.steps,
        env.session.rng.getstate(),
    )
    assert after == before
    monkeypatch.setattr(session, "apply_op", real)
    # and the restored session continues exactly like an untouched twin
    twin = ToolWorldEnv(TASKS)
    twin.reset(TASK, seed=5)
    twin.step(act)
    for _ in range(5):
        assert env.step(act).model_dump() == twin.step(act).model_dump()


def test_failed_step_over_http_is_rolled_back(monkeypatch):
    with TestClient(create_app(ServerSettings(), tasks=TASKS), raise_server_exceptions=False) as c:
        sid = c.post("/sessions", json={"task_id": TASK, "seed": 1}).json()["session_id"]
        state0 = c.get(f"/sessions/{sid}/state").json()["state"]
        monkeypatch.setattr(session, "apply_op", lambda *a, **k: 1 / 0)
        tool = c.get(f"/tools?session_id={sid}").json()["tools"][0]["function"]
        from agentrl.bench.envs import _args_for

        args = json.dumps(_args_for(tool["parameters"], random.Random(0)))
        body = {"tool_calls": [{"id": "1", "name": tool["name"], "arguments": args}]}
        for _ in range(5):
            assert c.post(f"/sessions/{sid}/step", json=body).status_code == 500
        assert c.get(f"/sessions/{sid}/state").json()["state"] == state0


def test_gc_is_frozen_only_while_serving():
    gc.unfreeze()
    app = create_app(ServerSettings(), tasks=TASKS)
    assert gc.get_freeze_count() == 0
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        assert gc.get_freeze_count() > 1000
    assert gc.get_freeze_count() == 0
