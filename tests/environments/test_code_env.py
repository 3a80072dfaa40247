"""Code environment: tools run in the jail, reward from hidden tests, fail-closed without isolation."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
from fastapi.testclient import TestClient

from environments.code.env import extract_code
from environments.code.server import create_app
from environments.protocol import ServerSettings
from environments.sandbox import Sandbox, SandboxLimits, SandboxUnavailable, jail, make_sandbox

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None and not os.environ.get("CI"),
    reason="bubblewrap not installed (apt-get install bubblewrap); in CI this fails instead",
)


@pytest.fixture(scope="module")
def client():
    sb = Sandbox("bwrap", SandboxLimits(wall_timeout_s=10), slots=4)
    with TestClient(create_app(ServerSettings(), sandbox=sb)) as c:
        yield c


def _answer(client, task, answer):
    body = {"task_id": task} if isinstance(task, str) else {"task_spec": task}
    sid = client.post("/sessions", json=body).json()["session_id"]
    return client.post(f"/sessions/{sid}/step", json={"final_answer": answer}).json()


@needs_bwrap
def test_reward_is_fraction_of_hidden_tests(client):
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    assert _answer(client, "add-two", good)["reward"] == 1.0
    partial = "def add(a, b):\n    return int(a) + int(b)"  # fails the float test
    r = _answer(client, "add-two", partial)
    assert r["reward"] == pytest.approx(2 / 3) and r["info"]["passed_tests"] == [0, 1]
    r = _answer(client, "add-two", "def add(a, b) return")
    assert r["reward"] == 0.0 and "SyntaxError" in r["info"]["load_error"]


@needs_bwrap
def test_printed_forgery_and_early_exit_score_zero(client):
    forged = 'print("\\n" + "0" * 32 + \'{"passed": [0, 1, 2], "load_error": null}\')\nimport os\nos._exit(0)'
    assert _answer(client, "add-two", forged)["reward"] == 0.0
    assert _answer(client, "add-two", "import sys\nsys.exit(0)")["reward"] == 0.0
    assert _answer(client, "add-two", "while True:\n    pass")["reward"] == 0.0


@needs_bwrap
def test_tools_run_in_fresh_jails_and_inline_task_specs(client):
    spec = {"prompt": "Write double(x).", "tests": ["assert double(2) == 4", "assert double(0) == 0"]}
    sid = client.post("/sessions", json={"task_spec": spec}).json()["session_id"]
    calls = [
        {
            "id": "1",
            "name": "run_python",
            "arguments": json.dumps({"code": "open('/work/keep', 'w').write('x')"}),
        },
        {"id": "2", "name": "run_shell", "arguments": json.dumps({"command": "ls /work; echo $((6*7))"})},
        {
            "id": "3",
            "name": "run_python",
            "arguments": json.dumps({"code": "print(input()[::-1])", "stdin": "abc"}),
        },
        {"id": "4", "name": "run_python", "arguments": "{}"},
    ]
    r = client.post(f"/sessions/{sid}/step", json={"tool_calls": calls}).json()
    contents = [m["content"] for m in r["messages"]]
    assert "keep" not in contents[1] and "42" in contents[1]  # nothing persists between calls
    assert "cba" in contents[2]
    assert "'code' is a required property" in contents[3]
    assert client.get(f"/sessions/{sid}/state").json()["state"]["tool_calls"] == 3
    r = client.post(f"/sessions/{sid}/step", json={"final_answer": "def double(x):\n    return 2 * x"}).json()
    assert r["reward"] == 1.0
    bad = client.post("/sessions", json={"task_spec": {"prompt": "x", "tests": []}})
    assert bad.status_code == 400 and "tests" in bad.json()["error"]
    assert client.post("/sessions", json={"task_id": "nope"}).status_code == 404
    assert len(client.get("/metadata").json()["task_ids"]) >= 10


def test_extract_code():
    assert extract_code("Here:\n```python\nx = 1\n```\nbye") == "x = 1\n"
    assert extract_code("x = 2") == "x = 2"


def test_fails_closed_without_isolation(monkeypatch, caplog):
    real_which = shutil.which
    monkeypatch.setattr(jail.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    monkeypatch.delenv("AGENTRL_SANDBOX_UNSAFE", raising=False)
    with pytest.raises(SandboxUnavailable, match="bwrap"):
        make_sandbox()
    with TestClient(create_app(ServerSettings())) as c:
        assert c.get("/health").status_code == 200
        sid = c.post("/sessions", json={"task_id": "add-two"}).json()["session_id"]
        call = {"id": "1", "name": "run_python", "arguments": json.dumps({"code": "print(1)"})}
        msg = c.post(f"/sessions/{sid}/step", json={"tool_calls": [call]}).json()["messages"][0]["content"]
        assert "code execution is disabled" in msg and "bwrap" in msg
        assert (
            c.post(f"/sessions/{sid}/step", json={"final_answer": "def add(a, b): return a + b"}).json()[
                "reward"
            ]
            == 0.0
        )
    monkeypatch.setenv("AGENTRL_SANDBOX_UNSAFE", "1")
    with caplog.at_level(logging.CRITICAL):
        sb = make_sandbox()
    assert sb.mode == "unsafe" and "WITHOUT a jail" in caplog.text
    res = sb.run(["python3", "-c", "print(1)"])
    assert res.status == "ok" and res.stdout == "1\n"
