"""Every FastAPI server of the platform, built in-process for fuzzing and auth audits.

Environment servers: code (bubblewrap sandbox; runs with execution disabled if no sandbox works here),
tool_world, reasoning, and the protocol's key-value demo env. Plus the rollout API on a SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

ENV_SERVERS = ("code", "tool_world", "reasoning", "kv_demo")
ALL_SERVERS = (*ENV_SERVERS, "rollout_api")


def env_app(name: str, token: str | None = None) -> FastAPI:
    """The environment server `name` (as `agentrl serve env NAME` builds it) with an explicit token."""
    from environments.protocol import ServerSettings, create_env_app

    settings = ServerSettings(token=token or None, max_sessions=256)
    if name == "kv_demo":
        from environments.protocol.demo import KeyValueEnv

        return create_env_app(KeyValueEnv, settings)
    module = __import__(f"environments.{name}.server", fromlist=["create_app"])
    return module.create_app(settings)


def build(name: str, workdir: Path, token: str | None = None) -> tuple[FastAPI, str]:
    """(app, openapi path) of server `name`; the rollout API keeps its store in `workdir`."""
    if name == "rollout_api":
        from services.rollout_api.app import create_app

        app = create_app(str(workdir / f"rollout-{name}.db"), token=token or "", reap_interval_s=0)
        return app, "/v1/openapi.json"
    return env_app(name, token), "/openapi.json"


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route the app serves, documented or not (MCP, OpenEnv, docs pages)."""
    out: list[tuple[str, str]] = []
    for route in app.routes:
        path = getattr(route, "path", None)
        methods: Any = getattr(route, "methods", None)
        if path is None:
            continue
        if methods is None:  # websocket routes
            out.append(("WS", path))
            continue
        out += [(m, path) for m in sorted(methods) if m != "HEAD"]
    return sorted(set(out))


AppFactory = Callable[[str, Path, str | None], tuple[FastAPI, str]]
