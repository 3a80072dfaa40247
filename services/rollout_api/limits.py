"""Request guard run before FastAPI parses a body: a NaN/Infinity check (400).

The size limit (413) is the shared `agentrl.body_limit.BodyLimitMiddleware`, outside this guard, so a chunked
upload is refused once it passes the limit and this guard never buffers more than `max_body_bytes`. Only JSON
bodies of non-GET requests are read here, then replayed to the app. Python's json module accepts the non-standard literals NaN and Infinity;
inside free-form dicts (task, metadata) pydantic would later turn them into null silently, so they are refused
here. Only bodies that contain those bytes at all are parsed a second time, so the common path costs nothing.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]


class NonFiniteJSONGuard:
    """400 for JSON bodies holding NaN/Infinity. Sits inside `agentrl.body_limit.BodyLimitMiddleware`, so the
    body it buffers is already capped at `max_body_bytes` (an oversized one raises from `receive` here)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def _reject(self, send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") in ("GET", "HEAD", "OPTIONS")
            or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if b"NaN" in body or b"Infinity" in body:
            problem = _nonfinite(body)
            if problem:
                await self._reject(send, 400, problem)
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    ctype = dict(scope.get("headers") or []).get(b"content-type", b"")
    return ctype.split(b";")[0].strip().lower().endswith(b"json")


def _nonfinite(body: bytes) -> str | None:
    def refuse(literal: str) -> Any:
        raise _NonFinite(literal)

    try:
        json.loads(body, parse_constant=refuse)
    except _NonFinite as exc:
        return f"request JSON contains {exc}, which is not valid JSON; send finite numbers (or null)"
    except (ValueError, RecursionError):
        return None  # malformed in some other way: FastAPI reports it
    return None


class _NonFinite(Exception):
    pass
