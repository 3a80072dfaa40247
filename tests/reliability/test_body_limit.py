"""Oversized request bodies are refused unread (agentrl/body_limit.py), on a real uvicorn server.

Every environment server (`create_env_app`) and the rollout API share the middleware. Checked on each:
- a declared Content-Length over the limit gets 413 at once: the server answers without waiting for a body
  that is never sent;
- a chunked 200 MB upload gets 413 after about the limit, not after the whole body: the client's generator is
  stopped long before its end, and the process's peak RSS (server and client share it) grows by far less
  than the body;
- the server keeps serving normal requests afterwards, and a body at exactly the limit is accepted.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from environments.protocol.app import create_env_app
from environments.protocol.demo import KeyValueEnv
from environments.protocol.settings import ServerSettings
from tests.servers import serve_app

LIMIT = 2**20  # 1 MiB
BIG = 200 * 2**20  # 200 MiB, sent in chunks
CHUNK = 256 * 2**10


def _env_app(_: Path) -> Any:
    return create_env_app(KeyValueEnv, ServerSettings(max_body_bytes=LIMIT, mcp=True))


def _api_app(tmp: Path) -> Any:
    from services.rollout_api.app import create_app

    return create_app(str(tmp / "rollout.db"), token="", reap_interval_s=0, max_body_bytes=LIMIT)


# (app factory, error key, POST routes that take a body)
SERVERS = {
    "env": (_env_app, "error", ["/sessions", "/sessions/abc/step", "/reset", "/mcp"]),
    "rollout_api": (_api_app, "detail", ["/v1/jobs", "/v1/jobs/lease", "/v1/jobs/j1/trajectory"]),
}


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, list[str]]]:
    factory, key, paths = SERVERS[request.param]
    with serve_app(factory(tmp_path)) as (url, _):
        yield url, key, paths


def _peak_rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _assert_413(r: httpx.Response, key: str) -> None:
    assert r.status_code == 413, r.text[:300]
    body = r.json()
    assert body["limit_bytes"] == LIMIT
    assert f"limit of {LIMIT} bytes" in body[key]
    assert r.headers["connection"] == "close"


def _serves_normally(url: str, key: str) -> None:
    assert httpx.get(url + "/health", timeout=10).status_code == 200
    if key == "error":  # env server: a whole episode step
        r = httpx.post(url + "/sessions", json={}, timeout=10)
        assert r.status_code == 201, r.text
        sid = r.json()["session_id"]
        action = {"tool_calls": [{"id": "c1", "name": "set_value", "arguments": {"key": "k", "value": "v"}}]}
        r = httpx.post(f"{url}/sessions/{sid}/step", json=action, timeout=10)
        assert r.status_code == 200, r.text
    else:
        job = {
            "id": "ok-1",
            "task": {"task_id": "t"},
            "env": {"endpoint": "http://e", "name": "e"},
            "sampling": {"temperature": 1.0, "max_tokens": 8},
            "policy_version": 0,
        }
        r = httpx.post(url + "/v1/jobs", json={"jobs": [job]}, timeout=10)
        assert r.status_code == 200, r.text


def test_declared_content_length_over_the_limit_is_refused_without_reading(server: Any) -> None:
    url, key, paths = server
    host, port = url.removeprefix("http://").split(":")
    for path in paths:
        # Headers only: 1 GB announced, no byte of it sent. A server that waited for the body would hang.
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {10**9}\r\n\r\n".encode()
            )
            t0 = time.monotonic()
            raw = b""
            while b"\r\n\r\n" not in raw or not raw.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
            assert time.monotonic() - t0 < 3
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), (path, raw[:300])
        assert f"limit of {LIMIT} bytes" in json.loads(body)[key]
    _serves_normally(url, key)


def test_chunked_200mb_body_is_cut_off_at_the_limit(server: Any) -> None:
    url, key, paths = server
    sent = 0
    piece = b"x" * CHUNK

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"x": "'
        while sent < BIG:
            sent += len(piece)
            yield piece
        yield b'"}'

    can_measure = _peak_rss_reset()
    base_kib = _status_kib("VmRSS")
    # A generator body has no length: httpx sends it with Transfer-Encoding: chunked.
    r = httpx.post(url + paths[0], content=body(), headers={"content-type": "application/json"}, timeout=30)
    _assert_413(r, key)
    # The server closed the connection at the limit; the client stopped sending within socket buffers of it.
    assert sent < 32 * 2**20, f"client sent {sent} bytes before the 413"
    if can_measure:
        grew_mib = (_status_kib("VmHWM") - base_kib) / 1024
        assert grew_mib < 48, f"peak RSS grew by {grew_mib:.0f} MiB while refusing a 200 MiB body"
    _serves_normally(url, key)


def test_chunked_bodies_over_the_limit_get_413_on_every_route(server: Any) -> None:
    url, key, paths = server
    for path in paths:

        def body() -> Iterator[bytes]:
            for _ in range(3 * LIMIT // CHUNK):
                yield b"y" * CHUNK

        r = httpx.post(url + path, content=body(), headers={"content-type": "application/json"}, timeout=30)
        _assert_413(r, key)
    _serves_normally(url, key)


def test_a_body_at_the_limit_is_read_and_answered_by_the_route(server: Any) -> None:
    url, key, paths = server
    pad = LIMIT - len(b'{"pad": ""}')
    content = b'{"pad": "' + b"p" * pad + b'"}'
    assert len(content) == LIMIT
    for chunked in (False, True):
        data: Any = iter([content[: LIMIT // 2], content[LIMIT // 2 :]]) if chunked else content
        r = httpx.post(url + paths[0], content=data, headers={"content-type": "application/json"}, timeout=30)
        # Read and judged by the route: a schema error (400/422) or success, never 413.
        assert r.status_code in (200, 201, 400, 422), (chunked, r.status_code, r.text[:300])
    _serves_normally(url, key)
