"""One way for tests to run an ASGI app on loopback: uvicorn in a thread, ready once /health answers 200."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(app: Any, port: int | None = None) -> Iterator[tuple[str, uvicorn.Server]]:
    """Yields (base URL, server); stops the server on exit."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    else:
        server.should_exit = True
        raise RuntimeError(f"server on {url} did not start")
    try:
        yield url, server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
