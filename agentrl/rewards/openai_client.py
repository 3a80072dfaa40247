"""A small OpenAI-compatible chat-completions client for the judge and the self-critique critic.

Works against vLLM's server (`vllm serve`) or any provider. What the judge needs and the `openai` package
does not give in one place: a shared rate limiter (requests/s) across threads, retries with exponential
backoff on 429/5xx/transport errors (honouring Retry-After), hard timeouts on every call, and token and cost
accounting per run. Structured output is requested with `response_format: json_schema` (OpenAI and vLLM);
`structured="guided_json"` sends vLLM's older `guided_json` extra field instead.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from agentrl.errors import AgentRLError


class ChatError(AgentRLError):
    """A chat call failed for good (after retries); `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class ChatClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(default="http://127.0.0.1:8000/v1", description="OpenAI-compatible /v1 root.")
    model: str = "judge"
    api_key: str | None = Field(default=None, description="Sent as a bearer token when set.")
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    backoff_base_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=20.0, ge=0)
    requests_per_second: float | None = Field(default=None, gt=0, description="None: unlimited.")
    max_concurrency: int = Field(default=8, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=1024, ge=1)
    structured: Literal["response_format", "guided_json", "none"] = "response_format"
    price_per_mtok_in: float = Field(default=0.0, ge=0, description="USD per million prompt tokens.")
    price_per_mtok_out: float = Field(default=0.0, ge=0, description="USD per million completion tokens.")


class RateLimiter:
    """Spaces request starts at least 1/rps apart across threads (a one-slot token bucket)."""

    def __init__(self, rps: float | None) -> None:
        self.interval = 1.0 / rps if rps else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until this caller may start; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        wait = start - now
        if wait > 0:
            time.sleep(wait)
        return wait


@dataclass
class UsageStats:
    """Per-run accounting; thread-safe via `lock`."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    rate_limited_s: float = 0.0
    errors: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost_usd": round(self.cost_usd, 6),
                "rate_limited_s": round(self.rate_limited_s, 3),
                "errors": dict(self.errors),
            }


@dataclass
class ChatResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


class ChatClient:
    """Thread-safe; one instance per run so the stats are per run."""

    def __init__(self, config: ChatClientConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._http = httpx.Client(
            base_url=config.base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.limiter = RateLimiter(config.requests_per_second)
        self.stats = UsageStats()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _body(self, messages: list[dict[str, Any]], json_schema: dict[str, Any] | None) -> dict[str, Any]:
        c = self.config
        body: dict[str, Any] = {
            "model": c.model,
            "messages": messages,
            "temperature": c.temperature,
            "max_tokens": c.max_tokens,
        }
        if json_schema is not None and c.structured == "response_format":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": json_schema, "strict": True},
            }
        elif json_schema is not None and c.structured == "guided_json":
            body["guided_json"] = json_schema
        return body

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        c = self.config
        if retry_after:
            try:
                return min(float(retry_after), c.backoff_max_s)
            except ValueError:
                pass
        return min(c.backoff_max_s, c.backoff_base_s * 2**attempt) * (0.5 + random.random() / 2)

    def _error(self, reason: str) -> None:
        with self.stats.lock:
            self.stats.errors[reason] += 1

    def chat(
        self, messages: list[dict[str, Any]], *, json_schema: dict[str, Any] | None = None
    ) -> ChatResult:
        """One completion with retries; raises `ChatError` when it gives up (never hangs past the timeouts)."""
        body = self._body(messages, json_schema)
        last = "unknown"
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                with self.stats.lock:
                    self.stats.retries += 1
            waited = self.limiter.acquire()
            with self.stats.lock:
                self.stats.requests += 1
                self.stats.rate_limited_s += waited
            retry_after = None
            try:
                resp = self._http.post("/chat/completions", json=body)
            except httpx.TimeoutException as exc:
                last = f"timeout ({type(exc).__name__})"
                self._error("timeout")
            except httpx.TransportError as exc:
                last = f"transport error: {exc}"
                self._error("transport")
            else:
                if resp.status_code == 200:
                    return self._parse(resp)
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                self._error(f"http_{resp.status_code}")
                if resp.status_code != 429 and resp.status_code < 500:
                    raise ChatError(
                        f"http_{resp.status_code}", last
                    )  # our request is wrong: retrying won't help
                retry_after = resp.headers.get("retry-after")
            if attempt < self.config.max_retries:
                time.sleep(self._backoff(attempt, retry_after))
        raise ChatError("gave_up", f"after {self.config.max_retries + 1} attempts, last error: {last}")

    def _parse(self, resp: httpx.Response) -> ChatResult:
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            self._error("bad_response")
            raise ChatError("bad_response", f"not an OpenAI chat completion: {exc!r}") from None
        usage = data.get("usage") or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        c = self.config
        with self.stats.lock:
            self.stats.prompt_tokens += pt
            self.stats.completion_tokens += ct
            self.stats.cost_usd += (pt * c.price_per_mtok_in + ct * c.price_per_mtok_out) / 1e6
        return ChatResult(
            text=text, prompt_tokens=pt, completion_tokens=ct, finish_reason=choice.get("finish_reason")
        )
