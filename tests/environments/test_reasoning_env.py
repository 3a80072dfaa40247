"""Reasoning env: seeded generators, exact answer checking, reasoning-gym specs."""

from __future__ import annotations

import importlib.util

import pytest
from fastapi.testclient import TestClient

from environments.protocol import ServerSettings
from environments.reasoning import generators
from environments.reasoning.env import extract_answer
from environments.reasoning.server import create_app


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServerSettings())) as c:
        yield c


def _solve(family: str, seed: int) -> str:
    q, a, meta = generators.generate(family, seed)
    if family != "game24":
        return a
    import itertools

    nums = meta["numbers"]
    for p in itertools.permutations(nums):
        for ops in itertools.product("+-*/", repeat=3):
            for fmt in ("(({}{}{}){}{}){}{}", "({}{}{}){}({}{}{})", "{}{}({}{}({}{}{}))"):
                e = fmt.format(p[0], ops[0], p[1], ops[1], p[2], ops[2], p[3])
                try:
                    if generators._safe_eval(e) == 24:
                        return e
                except ZeroDivisionError:
                    continue
    raise AssertionError(f"no 24 solution found for {nums}")


@pytest.mark.parametrize("family", sorted(generators.FAMILIES))
def test_generators_are_seeded_and_checkable(family):
    assert generators.generate(family, 7) == generators.generate(family, 7)
    assert any(generators.generate(family, s)[0] != generators.generate(family, 7)[0] for s in range(8, 14))
    for seed in range(5):
        _, expected, meta = generators.generate(family, seed)
        assert generators.check(family, _solve(family, seed), expected, meta)
        assert not generators.check(family, "not an answer", expected, meta)


def test_game24_checker_rejects_cheats():
    meta = {"numbers": [4, 10, 12, 3]}
    assert generators.check("game24", "(10-4)*12/3", "", meta)
    assert not generators.check("game24", "24", "", meta)  # numbers not used
    assert not generators.check("game24", "(10-4)*(12/3)*1", "", meta)  # extra number
    assert not generators.check("game24", "__import__('os')", "", meta)
    assert not generators.check("game24", "4*10*12*3", "", meta)


def test_answer_extraction():
    assert extract_answer("think...\n<answer> 42 </answer>") == "42"
    assert extract_answer("so \\boxed{7}") == "7"
    assert extract_answer("work\n\n  19\n") == "19"


def test_episode_rewards(client):
    q, a, _ = generators.generate("arithmetic", 11)
    obs = client.post("/sessions", json={"task_id": "arithmetic:11"}).json()
    assert obs["messages"][1]["content"] == q and obs["tools"] == []
    r = client.post(
        f"/sessions/{obs['session_id']}/step", json={"final_answer": f"<answer>{a}</answer>"}
    ).json()
    assert r["reward"] == 1.0 and r["done"] and r["info"]["correct"]
    obs = client.post("/sessions", json={"task_id": "arithmetic:11"}).json()
    r = client.post(f"/sessions/{obs['session_id']}/step", json={"final_answer": "<answer>1</answer>"}).json()
    assert r["reward"] == 0.0
    spec = {"question": "What is 2+2?", "answer": 4}
    obs = client.post("/sessions", json={"task_spec": spec}).json()
    r = client.post(f"/sessions/{obs['session_id']}/step", json={"final_answer": "4"}).json()
    assert r["reward"] == 1.0
    # a tool call in a tool-less env is a tool error, and the one-step budget ends the episode
    obs = client.post("/sessions", json={"seed": 5}).json()
    call = {"id": "1", "name": "calculator", "arguments": "{}"}
    r = client.post(f"/sessions/{obs['session_id']}/step", json={"tool_calls": [call]}).json()
    assert "unknown tool" in r["messages"][0]["content"] and r["done"] and r["info"]["truncated"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"task_id": "nope:1"}, 404),
        ({"task_id": "arithmetic:x"}, 404),
        ({"task_spec": {"question": 1}}, 400),
        ({"task_spec": {"source": "reasoning_gym", "dataset": 5}}, 400),
    ],
)
def test_bad_tasks(client, body, status):
    r = client.post("/sessions", json=body)
    assert r.status_code == status and r.json()["error"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("reasoning_gym") is None, reason="reasoning-gym not installed")
def test_reasoning_gym_tasks(client):
    spec = {"source": "reasoning_gym", "dataset": "basic_arithmetic", "seed": 3, "index": 1}
    obs = client.post("/sessions", json={"task_spec": spec}).json()
    assert obs["task_id"] == "rg:basic_arithmetic:3:1"
    import reasoning_gym

    entry = reasoning_gym.create_dataset("basic_arithmetic", size=2, seed=3)[1]
    r = client.post(
        f"/sessions/{obs['session_id']}/step", json={"final_answer": f"<answer>{entry['answer']}</answer>"}
    )
    assert r.json()["reward"] == 1.0
    bad = client.post("/sessions", json={"task_spec": {**spec, "dataset": "no_such_dataset"}})
    assert bad.status_code == 400 and "no_such_dataset" in bad.json()["error"]
