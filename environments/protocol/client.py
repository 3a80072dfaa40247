"""HTTP clients for the environment protocol (sync `EnvClient`, async `AsyncEnvClient`), used by rollouts.

Every call has a timeout. Retries are safe by construction: a request that may have reached the server is
retried only when it is idempotent (GET, DELETE); create/step are retried only when the connection was
never made (connect errors) or the server said 429/503 before doing anything.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from typing import Any, Literal

import httpx

from environments.protocol.aio_backend import AiohttpBackend, TransportFailure
from environments.protocol.schemas import Action, Observation, SessionState, StepResult

_RETRY_STATUS = {429, 503}


class EnvClientError(Exception):
    """The server answered with an error status (message from the server's `error` field)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


def _task_body(task: str | dict[str, Any] | None, seed: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if isinstance(task, str):
        body["task_id"] = task
    elif isinstance(task, dict):
        body["task_spec"] = task
    elif task is not None:
        raise TypeError(
            f"task must be a task id (str), a task spec (dict) or None, got {type(task).__name__}"
        )
    if seed is not None:
        body["seed"] = seed
    return body


def _action_body(action: Action | dict[str, Any]) -> dict[str, Any]:
    if isinstance(action, Action):
        return action.model_dump(exclude_none=True)
    return Action.model_validate(action).model_dump(exclude_none=True)  # fail early, client side


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        message = resp.json().get("error") or resp.text
    except ValueError:
        message = resp.text
    raise EnvClientError(resp.status_code, message)


def _decode(status: int, text: str) -> Any:
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if status >= 400:
        message = data.get("error") if isinstance(data, dict) and data.get("error") else text
        raise EnvClientError(status, message)
    if data is None:
        raise EnvClientError(status, f"response is not JSON: {text[:200]!r}")
    return data


def _should_retry(method: str, exc: Exception | None, resp: httpx.Response | None) -> bool:
    if resp is not None:
        return resp.status_code in _RETRY_STATUS
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    return method in ("GET", "DELETE") and isinstance(exc, httpx.TransportError)


def _limits(max_connections: int) -> httpx.Limits:
    # Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive timeout: reusing a connection
    # the server is closing at that moment fails a POST that cannot be retried safely (a step).
    return httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=2.0
    )


class _Base:
    def __init__(
        self, base_url: str, token: str | None, timeout: float, retries: int, backoff_s: float
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.retries = retries
        self.backoff_s = backoff_s


class EnvClient(_Base):
    """Blocking client. `with EnvClient(url) as env: obs = env.reset("task-1"); env.step(obs.session_id, a)`."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout, retries, backoff_s)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=self.timeout, transport=transport
        )

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        for attempt in range(self.retries + 1):
            exc: Exception | None = None
            resp: httpx.Response | None = None
            try:
                resp = self._http.request(method, path, **kw)
            except httpx.TransportError as e:
                exc = e
            if attempt < self.retries and _should_retry(method, exc, resp):
                time.sleep(self.backoff_s * 2**attempt)
                continue
            if exc is not None:
                raise exc
            assert resp is not None
            _raise_for(resp)
            return resp.json()
        raise AssertionError("unreachable")

    def reset(self, task: str | dict[str, Any] | None = None, seed: int | None = None) -> Observation:
        return Observation.model_validate(self._request("POST", "/sessions", json=_task_body(task, seed)))

    def step(self, session_id: str, action: Action | dict[str, Any]) -> StepResult:
        data = self._request("POST", f"/sessions/{session_id}/step", json=_action_body(action))
        return StepResult.model_validate(data)

    def state(self, session_id: str) -> SessionState:
        return SessionState.model_validate(self._request("GET", f"/sessions/{session_id}/state"))

    def close_session(self, session_id: str) -> None:
        self._request("DELETE", f"/sessions/{session_id}")

    def tools(self, session_id: str | None = None) -> list[dict[str, Any]]:
        params = {"session_id": session_id} if session_id else None
        return self._request("GET", "/tools", params=params)["tools"]

    def metadata(self) -> dict[str, Any]:
        return self._request("GET", "/metadata")

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EnvClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncEnvClient(_Base):
    """The same API for asyncio rollout loops. Transport: aiohttp when installed (much faster at high
    concurrency, see aio_backend.py), else httpx; `backend="httpx"` or a custom `transport` forces httpx."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 256,
        backend: Literal["auto", "aiohttp", "httpx"] = "auto",
    ) -> None:
        super().__init__(base_url, token, timeout, retries, backoff_s)
        if backend == "auto":
            backend = "aiohttp" if transport is None and importlib.util.find_spec("aiohttp") else "httpx"
        self.backend = backend
        self._aio = (
            AiohttpBackend(self.base_url, self.headers, timeout, max_connections)
            if backend == "aiohttp"
            else None
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self.headers,
            timeout=self.timeout,
            transport=transport,
            limits=_limits(max_connections),
        )

    async def _send(self, method: str, path: str, **kw: Any) -> tuple[int, str]:
        if self._aio is not None:
            return await self._aio.request(method, path, json=kw.get("json"), params=kw.get("params"))
        try:
            resp = await self._http.request(method, path, **kw)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransportFailure(f"cannot connect to {self.base_url}: {exc}", sent=False) from exc
        except httpx.TransportError as exc:
            raise TransportFailure(f"{method} {path} failed: {type(exc).__name__}: {exc}", sent=True) from exc
        return resp.status_code, resp.text

    async def _request(self, method: str, path: str, **kw: Any) -> Any:
        for attempt in range(self.retries + 1):
            try:
                status, text = await self._send(method, path, **kw)
            except TransportFailure as exc:
                # Retry only if the server cannot have acted on it, or the call is idempotent.
                if attempt < self.retries and (not exc.sent or method in ("GET", "DELETE")):
                    await asyncio.sleep(self.backoff_s * 2**attempt)
                    continue
                raise
            if status in _RETRY_STATUS and attempt < self.retries:
                await asyncio.sleep(self.backoff_s * 2**attempt)
                continue
            return _decode(status, text)
        raise AssertionError("unreachable")

    async def reset(self, task: str | dict[str, Any] | None = None, seed: int | None = None) -> Observation:
        return Observation.model_validate(
            await self._request("POST", "/sessions", json=_task_body(task, seed))
        )

    async def step(self, session_id: str, action: Action | dict[str, Any]) -> StepResult:
        data = await self._request("POST", f"/sessions/{session_id}/step", json=_action_body(action))
        return StepResult.model_validate(data)

    async def state(self, session_id: str) -> SessionState:
        return SessionState.model_validate(await self._request("GET", f"/sessions/{session_id}/state"))

    async def close_session(self, session_id: str) -> None:
        await self._request("DELETE", f"/sessions/{session_id}")

    async def tools(self, session_id: str | None = None) -> list[dict[str, Any]]:
        params = {"session_id": session_id} if session_id else None
        return (await self._request("GET", "/tools", params=params))["tools"]

    async def metadata(self) -> dict[str, Any]:
        return await self._request("GET", "/metadata")

    async def health(self) -> dict[str, Any]:
        return await self._request("GET", "/health")

    async def close(self) -> None:
        if self._aio is not None:
            await self._aio.close()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncEnvClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
