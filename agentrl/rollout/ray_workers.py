"""Rollout workers as Ray actors: the same `RolloutWorker`, scheduled by Ray across a cluster.

The trainer calls `launch_ray_workers(n, api_url, model)`; each actor builds its own engine (in-process vLLM from
a checkpoint path, or a client of a vLLM server URL) and leases from the rollout API like a standalone worker, so
exactly-once and failure handling are the API's and the worker's, not Ray's. A dead actor's leases expire and are
re-leased. Ray is imported only here, when scale-out is asked for.
"""

from __future__ import annotations

import os
from typing import Any


class _WorkerActor:
    """Body of the Ray actor (wrapped with `ray.remote` in `actor_class`)."""

    def __init__(
        self,
        api_url: str,
        model: str | None = None,
        engine_url: str | None = None,
        tokenizer_path: str | None = None,
        api_token: str | None = None,
        worker_config: dict[str, Any] | None = None,
        max_model_len: int = 1024,
    ) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from transformers import AutoTokenizer

        from agentrl.rollout.agent_loop import LoopConfig
        from agentrl.rollout.worker import RolloutWorker, WorkerConfig
        from agentrl.rollout.worker_cli import build_engine
        from services.rollout_api.client import RolloutClient

        cfg = dict(worker_config or {})
        loop = LoopConfig(**cfg.pop("loop", {"max_context_tokens": max_model_len}))
        self.engine = build_engine(model, engine_url, max_model_len, request_timeout_s=120.0)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path or model)
        self.client = RolloutClient(api_url, token=api_token)
        self.worker = RolloutWorker(self.client, self.engine, tokenizer, WorkerConfig(loop=loop, **cfg))

    def run(self, max_rounds: int | None = None, idle_exit_s: float | None = 5.0) -> dict[str, int]:
        return dict(vars(self.worker.run(max_rounds=max_rounds, idle_exit_s=idle_exit_s)))

    def worker_id(self) -> str:
        return self.client.worker_id

    def load_weights_from(self, checkpoint: str) -> float:
        """Colocated sync for actors that host vLLM: reload from a saved checkpoint; returns seconds."""
        from model.checkpoint import load_checkpoint
        from model.weights import checkpoint_named_tensors

        model, _ = load_checkpoint(checkpoint)
        return float(self.engine.load_weights(checkpoint_named_tensors(model))["seconds"])


def actor_class(num_cpus: float = 1.0) -> Any:
    import ray

    return ray.remote(num_cpus=num_cpus)(_WorkerActor)


def launch_ray_workers(n: int, api_url: str, num_cpus: float = 1.0, **kwargs: Any) -> list[Any]:
    """Start `n` worker actors (ray.init must have been called); returns their handles."""
    cls = actor_class(num_cpus)
    return [cls.remote(api_url, **kwargs) for _ in range(n)]


def run_ray_workers(actors: list[Any], max_rounds: int | None = None, idle_exit_s: float = 5.0) -> list[dict]:
    """Run every actor's lease loop until the queue stays empty for `idle_exit_s`; returns their stats."""
    import ray

    return ray.get([a.run.remote(max_rounds=max_rounds, idle_exit_s=idle_exit_s) for a in actors])
