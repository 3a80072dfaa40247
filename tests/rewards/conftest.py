"""Fixtures for the rewards tests: the repo's rubrics, a canned OpenAI-format server, and the vLLM hook.

`fake_openai_server` is a real FastAPI app under uvicorn on a free port. It serves canned chat completions
and exists ONLY to exercise malformed verdicts, retries, rate limits and timeouts, which a real model cannot
be made to produce on demand. The scenario is chosen by the request's `model` field.

`vllm_server_url` serves the tiny K2 checkpoint (tests/conftest.py `tiny_checkpoint`) with vLLM's OpenAI
server, for the real-vLLM judge and critic tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections import Counter
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from agentrl.rewards.rubrics import Rubric, RubricKind, RubricSet, load_rubrics
from tests.conftest import require_vllm


@pytest.fixture(scope="session")
def repo_rubrics() -> RubricSet:
    return load_rubrics()


@pytest.fixture
def small_rubrics() -> list[Rubric]:
    return [
        Rubric(id="r.clarity", name="Clarity", description="Be clear.", kind=RubricKind.core, weight=1.0),
        Rubric(
            id="r.praise",
            name="No praise",
            description="No praise.",
            kind=RubricKind.prescriptive,
            mandatory=True,
        ),
    ]


def _completion(content: str | None, *, pt: int = 100, ct: int = 20) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "test",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
    }


def _ids(body: dict[str, Any]) -> list[str]:
    schema = body.get("response_format", {}).get("json_schema", {}).get("schema") or body.get("guided_json")
    return schema["properties"]["verdicts"]["required"]


def _good_verdict(body: dict[str, Any], score: int = 8) -> str:
    return json.dumps({"verdicts": {i: {"reason": "ok", "score": score} for i in _ids(body)}})


def make_app() -> FastAPI:
    app = FastAPI()
    app.state.calls = Counter()
    app.state.bodies = []
    app.state.headers = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        model = body["model"]  # "scenario" or "scenario:unique-suffix" (the suffix keeps call counts apart)
        app.state.calls[model] += 1
        app.state.bodies.append(body)
        app.state.headers.append(dict(request.headers))
        n = app.state.calls[model]
        model = model.split(":")[0]
        if model == "good":
            return _completion(_good_verdict(body))
        if model == "fenced":
            return _completion("Sure! Here is my verdict:\n```json\n" + _good_verdict(body, 6) + "\n```")
        if model == "praise_fail":  # the mandatory rubric scores 0
            v = json.loads(_good_verdict(body, 9))
            v["verdicts"]["r.praise"]["score"] = 0
            return _completion(json.dumps(v))
        if model == "malformed_json":
            return _completion('{"verdicts": {"r.clarity": {"reason": "fine", "score": 8},')
        if model == "prose":
            return _completion("The response is pretty good, I'd say 8/10.")
        if model == "wrong_schema":
            return _completion(
                json.dumps({"verdicts": {i: {"reason": "x", "score": 42} for i in _ids(body)}})
            )
        if model == "malformed_then_good":
            return _completion("not json" if n == 1 else _good_verdict(body))
        if model == "flaky_500":
            if n <= 2:
                return JSONResponse({"error": "overloaded"}, status_code=503)
            return _completion(_good_verdict(body))
        if model == "rate_429":
            if n == 1:
                return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "0"})
            return _completion(_good_verdict(body))
        if model == "always_500":
            return JSONResponse({"error": "down"}, status_code=500)
        if model == "bad_request":
            return JSONResponse({"error": "bad model"}, status_code=400)
        if model == "no_choices":
            return {"id": "x", "choices": []}
        if model == "slow":
            import asyncio

            await asyncio.sleep(1.0)
            return _completion(_good_verdict(body))
        if model == "critic_always_a":  # a maximally position-biased critic
            return _completion("Both are fine. [[A]]")
        return JSONResponse({"error": f"unknown scenario {model}"}, status_code=404)

    return app


@pytest.fixture(scope="module")
def fake_openai_server():
    """Yields (base_url, app); the app records calls, bodies and headers per test module."""
    app = make_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test OpenAI server did not start within 10 s")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1", app
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="session")
def vllm_server_url(tiny_checkpoint: str, tmp_path_factory: pytest.TempPathFactory):
    """`.../v1` of a real vLLM OpenAI server serving the tiny K2 checkpoint (random init).

    `AGENTRL_TEST_VLLM_URL` points at an already running server instead. Otherwise this starts
    `vllm.entrypoints.openai.api_server` as a subprocess (minutes on 2 busy cores) with whitespace-free
    guided JSON (see agentrl/rewards/judge.py), and stops it at the end of the session.
    """
    url = os.environ.get("AGENTRL_TEST_VLLM_URL")
    if url:
        yield url
        return
    require_vllm()
    import subprocess
    import sys

    import httpx

    from agentrl.engine.cpu_fixes import cpu_server_args

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", tiny_checkpoint, "--served-model-name", "k2-tiny",
        "--dtype", "float32", "--max-model-len", "1024", "--enforce-eager",
        "--kv-cache-memory-bytes", str(256 * 1024**2),
        "--structured-outputs-config", json.dumps({"backend": "xgrammar", "disable_any_whitespace": True}),
        "--host", "127.0.0.1", "--port", str(port), *cpu_server_args(),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not healthy after 900 s:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        yield f"{base}/v1"
    finally:
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
