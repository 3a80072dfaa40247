"""Request guards run before FastAPI parses a body: a size limit (413) and a NaN/Infinity check (400).

The body is read here, counted, and replayed to the app, so a chunked upload without Content-Length is capped too
and memory stays bounded by the limit. Python's json module accepts the non-standard literals NaN and Infinity;
inside free-form dicts (task, metadata) pydantic would later turn them into null silently, so they are refused
here. Only bodies that contain those bytes at all are parsed a second time, so the common path costs nothing.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]


class BodyLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Any, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await self._reject(send, 400, "invalid Content-Length header")
                return
            if too_big:
                await self._reject(send, 413, f"request body over the limit of {self.max_bytes} bytes")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send, 413, f"request body over the limit of {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if (b"NaN" in body or b"Infinity" in body) and _is_json(scope):
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
