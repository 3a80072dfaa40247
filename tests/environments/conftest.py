"""Fixtures for environment tests: a real uvicorn server in a background thread."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.servers import free_port, serve_app  # noqa: F401 (re-exported)


@contextlib.contextmanager
def serve(app, port: int | None = None) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 in a thread; yields its base URL; stops it on exit."""
    with serve_app(app, port) as (url, _server):
        yield url


@pytest.fixture
def kv_url() -> Iterator[str]:
    from environments.protocol import ServerSettings, create_env_app
    from environments.protocol.demo import KeyValueEnv

    with serve(create_env_app(KeyValueEnv, ServerSettings())) as url:
        yield url
