"""`agentrl worker`: build an engine (in-process vLLM or a remote OpenAI-compatible server) and run a worker."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from agentrl.errors import ConfigError
from agentrl.rollout.agent_loop import LoopConfig
from agentrl.rollout.worker import RolloutWorker, WorkerConfig


def build_engine(
    model: str | None, engine_url: str | None, max_model_len: int, request_timeout_s: float
) -> Any:
    if bool(model) == bool(engine_url):
        raise ConfigError("give exactly one of --model (a checkpoint for in-process vLLM) or --engine-url")
    if engine_url:
        from agentrl.engine.openai_server import OpenAIServerEngine

        return OpenAIServerEngine(engine_url, timeout_s=request_timeout_s)
    from agentrl.engine.vllm_engine import VLLMEngine

    if not os.path.isfile(os.path.join(model or "", "config.json")):
        raise ConfigError(f"--model {model!r} is not a checkpoint directory (no config.json)")
    return VLLMEngine(model or "", max_model_len=max_model_len)


def run_worker_cli(
    api: str,
    token: str | None = None,
    model: str | None = None,
    engine_url: str | None = None,
    tokenizer_path: str | None = None,
    max_jobs: int = 16,
    max_rounds: int | None = None,
    idle_exit_s: float | None = None,
    env_token: str | None = None,
    max_model_len: int = 1024,
    request_timeout_s: float = 120.0,
) -> dict[str, int]:
    from transformers import AutoTokenizer

    from services.rollout_api.client import RolloutClient

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tok_path = tokenizer_path or model
    if not tok_path:
        raise ConfigError(
            "--tokenizer is required with --engine-url (the checkpoint directory of the served model)"
        )
    tokenizer = AutoTokenizer.from_pretrained(tok_path)
    engine = build_engine(model, engine_url, max_model_len, request_timeout_s)
    client = RolloutClient(api, token=token)
    client.health()  # fail fast with a clear error when the API is unreachable
    config = WorkerConfig(
        max_jobs=max_jobs, env_token=env_token, loop=LoopConfig(max_context_tokens=max_model_len)
    )
    worker = RolloutWorker(client, engine, tokenizer, config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logging.getLogger(__name__).info("worker %s polling %s", client.worker_id, api)
    stats = worker.run(stop=stop, max_rounds=max_rounds, idle_exit_s=idle_exit_s)
    return dict(vars(stats))
