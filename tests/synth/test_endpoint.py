"""The endpoint backend's error handling, against a real HTTP server speaking the OpenAI chat API.

The server below is scripted (deterministic answers, some deliberately invalid) so that retries, invalid-response
counting, token accounting and the judge veto can be asserted exactly. The test against a real vLLM server that
serves the tiny checkpoint lives with the vLLM integration tests.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from agentrl.synth.pipeline import run_synth
from agentrl.synth.roles import EndpointError


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scripted_app(judge_pass: bool) -> tuple[FastAPI, Counter]:
    app = FastAPI()
    seen: Counter = Counter()

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": "policy", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        body = await request.json()
        props = body["response_format"]["json_schema"]["schema"].get("properties", {})
        role = (
            "agent"
            if "tool" in props
            else "judge"
            if "pass" in props
            else "user"
            if "reply" in props
            else "writer"
        )
        seen[role] += 1
        if role == "agent":  # every third answer is not JSON; the others give up politely
            text = (
                "not json"
                if seen[role] % 3 == 0
                else json.dumps({"tool": "", "arguments": {}, "reply": "Done."})
            )
        elif role == "judge":
            text = json.dumps({"pass": judge_pass, "reason": "scripted"})
        elif role == "writer":  # drops the values it must keep: counted invalid, original kept
            text = json.dumps({"text": "Please help me."})
        else:
            text = json.dumps({"reply": "hmm"})
        return {
            "id": "x", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }  # fmt: skip

    return app, seen


@contextlib.contextmanager
def serve(app: FastAPI):
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(200):
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                break
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _cfg(tmp_path, url: str, roles: dict, target: int = 12) -> dict:
    return {
        "target": target,
        "max_attempts_factor": 1.0,
        "out_dir": str(tmp_path),
        "tasks": {"heldout": 2, "rl": 2},
        "backend": {"roles": roles, "endpoint": {"base_url": url, "model": "policy", "max_concurrency": 4}},
    }


def test_unreachable_endpoint_names_the_url(tmp_path):
    url = f"http://127.0.0.1:{_port()}/v1"
    with pytest.raises(EndpointError, match=rf"endpoint {url}/models is unreachable"):
        run_synth(_cfg(tmp_path, url, {"agent": "endpoint"}), echo=None)


def test_endpoint_agent_invalid_responses_are_counted_and_dropped(tmp_path):
    app, seen = scripted_app(judge_pass=True)
    with serve(app) as url:
        stats = run_synth(_cfg(tmp_path, url, {"agent": "endpoint", "task_writer": "endpoint"}), echo=None)
    ep = stats["endpoint"]
    assert stats["accepted"] == 0 and stats["attempts"] == 12  # "Done." never solves a task
    assert ep["invalid"]["agent"] > 0 and ep["invalid"]["task_writer"] == ep["calls"]["task_writer"] == 12
    assert ep["usage"]["prompt_tokens"] == 10 * ep["usage"]["requests"] > 0
    assert stats["rejections_by_reason"].get("no_invalid_response", 0) == ep["invalid"]["agent"]
    assert stats["backend"]["agent"] == "endpoint" and stats["backend"]["judge"] == "procedural"


@pytest.mark.parametrize("judge_pass", [True, False])
def test_endpoint_judge_can_veto_but_not_rescue(tmp_path, judge_pass):
    app, seen = scripted_app(judge_pass=judge_pass)
    with serve(app) as url:
        stats = run_synth(
            _cfg(tmp_path, url, {"judge": "endpoint", "user": "endpoint"}, target=20), echo=None
        )
    assert seen["judge"] == stats["attempts"] == 20
    if judge_pass:
        assert 0 < stats["accepted"] == stats["judged_pass"] < 20  # procedural failures stay failures
        rec = json.loads(Path(stats["files"]["trajectories"]).read_text().splitlines()[0])
        assert rec["provenance"]["judge"]["judge"] == "procedural+endpoint"
        assert rec["provenance"]["judge"]["scores"]["llm_pass"] == 1.0
    else:
        assert stats["accepted"] == 0
