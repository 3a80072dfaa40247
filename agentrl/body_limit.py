"""Request-body size limit for every agentrl HTTP server (environment servers and the rollout API).

An ASGI middleware, so it runs before FastAPI, MCP or any route reads a byte of the body:
- a declared `Content-Length` over the limit gets 413 at once, and the body is never read;
- a body without a length (chunked) is counted as the app reads it through `receive`. The first chunk that
  takes the total over the limit raises `BodyTooLarge` inside the app; whatever the app answers to that is
  dropped and the client gets the same 413. At most `max_bytes` plus one chunk is ever buffered.

The 413 carries `Connection: close`, so the server closes the connection instead of reading and discarding
the rest of an upload it has already refused. The JSON body names the limit and how to raise it.

Standard library only: the env and service images copy this one file (and `agentrl/__init__.py`), not the
rest of the package (environments/*/Dockerfile, services/Dockerfile).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """Raised from `receive` once the body read so far is over the limit; the middleware answers 413."""


class BodyLimitMiddleware:
    """413 for request bodies over `max_bytes`, without buffering them.

    `error_key` is the JSON key of the message (env servers: "error", rollout API: "detail"); `setting` names
    the knob that raises the limit (an environment variable or flag) and is quoted in the message.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, error_key: str = "error", setting: str = "") -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes
        self.error_key = error_key
        self.setting = setting

    def message(self) -> str:
        hint = f"; raise it with {self.setting}" if self.setting else ""
        return (
            f"request body is over the limit of {self.max_bytes} bytes ({self.max_bytes / 2**20:g} MiB){hint}"
        )

    async def _reject(self, send: Send, status: int, text: str) -> None:
        payload: dict[str, Any] = {self.error_key: text}
        if status == 413:
            payload["limit_bytes"] = self.max_bytes
        body = json.dumps(payload).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope.get("headers") or [] if k.lower() == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
            except ValueError:
                await self._reject(send, 400, f"invalid Content-Length header {declared[0][:40]!r}")
                return
            if length > self.max_bytes:
                log.info("413: %s %s declared %d bytes", scope.get("method"), scope.get("path"), length)
                await self._reject(send, 413, self.message())
                return

        received = 0
        tripped = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, tripped
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    tripped = True
                    raise BodyTooLarge(self.message())
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if tripped and not started:
                return  # the app's answer to a body it never got whole; replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not tripped:
                raise
        if tripped and not started:
            log.info("413: %s %s sent over %d bytes", scope.get("method"), scope.get("path"), self.max_bytes)
            await self._reject(send, 413, self.message())
