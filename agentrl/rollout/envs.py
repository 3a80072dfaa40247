"""How the agent loop reaches an environment: the `EnvClient` verbs, over HTTP or in process.

The loop only calls `reset(task, seed) -> Observation`, `step(session_id, action) -> StepResult` and
`close_session(session_id)`. `environments.protocol.EnvClient` has exactly these; `LocalEnv` gives an in-process
environment object the same verbs, for the single-machine default (no server, no sockets). Both use the
protocol's wire schemas, so a rollout behaves the same either way.
"""

from __future__ import annotations

import importlib
import threading
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from agentrl.errors import ConfigError
from environments.protocol import Action, EnvError, Environment, Observation, StepResult


class EnvLike(Protocol):
    def reset(self, task: str | dict[str, Any] | None = None, seed: int | None = None) -> Observation: ...

    def step(self, session_id: str, action: Action | dict[str, Any]) -> StepResult: ...

    def close_session(self, session_id: str) -> None: ...


class LocalEnv:
    """An in-process environment with the `EnvClient` verbs: one `Environment` per session from `factory`."""

    def __init__(self, factory: Callable[[], Environment], name: str = "") -> None:
        self.factory = factory
        self.name = name or getattr(factory, "name", "") or getattr(factory, "__name__", "local")
        self._sessions: dict[str, Environment] = {}
        self._lock = threading.Lock()

    def reset(self, task: str | dict[str, Any] | None = None, seed: int | None = None) -> Observation:
        env = self.factory()
        if isinstance(task, dict):
            obs = env.reset(task_spec=task, seed=seed)
        else:
            obs = env.reset(task_id=task, seed=seed)
        session_id = uuid.uuid4().hex
        with self._lock:
            self._sessions[session_id] = env
        return obs.model_copy(update={"session_id": session_id})

    def _get(self, session_id: str) -> Environment:
        with self._lock:
            env = self._sessions.get(session_id)
        if env is None:
            raise EnvError(f"unknown or closed session {session_id!r}")
        return env

    def step(self, session_id: str, action: Action | dict[str, Any]) -> StepResult:
        act = action if isinstance(action, Action) else Action.model_validate(action)
        return self._get(session_id).step(act)

    def close_session(self, session_id: str) -> None:
        with self._lock:
            env = self._sessions.pop(session_id, None)
        if env is not None:
            env.close()

    def close(self) -> None:
        for sid in list(self._sessions):
            self.close_session(sid)


def open_env(endpoint: str, token: str | None = None, timeout_s: float = 60.0) -> EnvLike:
    """`http(s)://host:port` -> an `EnvClient`; `local:package.module:Factory` -> a `LocalEnv`.

    `local:` builds the environment in this process by importing the factory (a class or zero-arg function).
    """
    if endpoint.startswith(("http://", "https://")):
        from environments.protocol import EnvClient

        return EnvClient(endpoint, token=token, timeout=timeout_s)
    if endpoint.startswith("local:"):
        target = endpoint.removeprefix("local:")
        module_name, _, attr = target.partition(":")
        if not module_name or not attr:
            raise ConfigError(f"env endpoint {endpoint!r}: expected local:package.module:Factory")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"env endpoint {endpoint!r}: cannot import {target}: {exc}") from exc
        return LocalEnv(factory, name=attr)
    raise ConfigError(f"env endpoint {endpoint!r}: expected an http(s):// URL or local:module:Factory")
