"""aiohttp transport for `AsyncEnvClient`.

Measured on this project's 2-core machines, httpx's AsyncClient slows down as concurrency grows (about
40 req/s at 64 concurrent requests against a server that aiohttp drives at 440 req/s), which would cap
the rollout loop. aiohttp is used when installed (it comes with the training stack); httpx otherwise.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from typing import Any


class TransportFailure(ConnectionError):
    """The request failed below HTTP. `sent` says whether the server may have received it."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class AiohttpBackend:
    def __init__(self, base_url: str, headers: dict[str, str], timeout: float, max_connections: int) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self.base_url = base_url
        self.headers = headers
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10.0))
        self.max_connections = max_connections
        self._session: Any = None

    async def request(
        self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, str]:
        aiohttp = self._aiohttp
        if self._session is None:  # created inside the running loop
            connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=2.0)
            self._session = aiohttp.ClientSession(
                headers=self.headers, timeout=self.timeout, connector=connector
            )
        data = None if json is None else jsonlib.dumps(json)
        headers = {"content-type": "application/json"} if data is not None else None
        try:
            async with self._session.request(
                method, self.base_url + path, data=data, params=params, headers=headers
            ) as resp:
                return resp.status, await resp.text()
        except aiohttp.ClientConnectorError as exc:
            raise TransportFailure(f"cannot connect to {self.base_url}: {exc}", sent=False) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransportFailure(f"{method} {path} failed: {type(exc).__name__}: {exc}", sent=True) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
