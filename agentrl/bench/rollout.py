"""`agentrl bench rollout`: multi-turn agentic rollouts vs raw vLLM vs HF generate, plus weight sync, in one run.

Same model (k2-tiny warm-started to emit K2 tool calls, `agentrl.rollout.warmstart`), same prompts (the initial
prompts of the key-value environment's episodes, `ShortKV`), same token counts:
- `agentic_tok_s`: the agent loop (in-process vLLM, `LocalEnv` with `env_latency_ms` per env call) over N episodes;
  generated tokens / wall time. Tool-result prefill and env calls are part of the wall time.
- `raw_vllm_tok_s`: one `generate` over the same N initial prompts, each forced to the mean generated length of
  the agentic run (`ignore_eos`), so both generate the same total number of tokens.
- `hf_generate_tok_s`: transformers `generate` on the same prompts and lengths (TRL's path without vLLM), batched
  with left padding, `min_new_tokens = max_new_tokens`.
- `weight_sync_s`: one trainer -> engine sync of all weights (`VLLMEngine.load_weights`).
Targets (issue 6): agentic >= 0.9x raw vLLM; agentic >= 2.5x HF generate.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("AGENTRL_BENCH_CACHE", "runs/bench_cache"))


class _SlowEnv:
    """Adds a fixed latency to every env call (a remote environment server's round trip)."""

    def __init__(self, inner: Any, latency_s: float) -> None:
        self.inner, self.latency_s = inner, latency_s

    def reset(self, task: Any = None, seed: int | None = None) -> Any:
        time.sleep(self.latency_s)
        return self.inner.reset(task, seed=seed)

    def step(self, session_id: str, action: Any) -> Any:
        time.sleep(self.latency_s)
        return self.inner.step(session_id, action)

    def close_session(self, session_id: str) -> None:
        self.inner.close_session(session_id)


def tool_policy_checkpoint(train_steps: int = 50) -> Path:
    """The warm-started tiny policy, built once and cached under runs/bench_cache."""
    from agentrl.rollout.warmstart import train_tool_policy
    from model.checkpoint import init_checkpoint

    out = CACHE / f"k2-tiny-tool-{train_steps}"
    if not (out / "config.json").is_file():
        base = init_checkpoint("k2-tiny", CACHE / "k2-tiny-base", seed=0)
        train_tool_policy(base, out, steps=train_steps)
    return out


def _hf_generate_tok_s(model: Any, tok: Any, prompts: list[list[int]], length: int, batch: int) -> float:
    import torch

    total, start = 0, time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            chunk = prompts[i : i + batch]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, p in enumerate(chunk):
                ids[j, width - len(p) :] = torch.tensor(p)
                mask[j, width - len(p) :] = 1
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                max_new_tokens=length,
                min_new_tokens=length,
                pad_token_id=tok.pad_token_id,
            )
            total += (out.shape[1] - width) * len(chunk)
    return total / (time.perf_counter() - start)


def run(quick: bool = False) -> dict[str, Any]:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import torch

    from agentrl.engine.base import SamplingSpec
    from agentrl.engine.vllm_engine import VLLMEngine
    from agentrl.rollout.agent_loop import AgentLoop, LoopConfig
    from agentrl.rollout.envs import LocalEnv
    from agentrl.rollout.episode import EpisodeSpec
    from agentrl.rollout.warmstart import ShortKV, kv_task
    from model.checkpoint import load_checkpoint
    from model.weights import checkpoint_named_tensors

    n = 32 if quick else 128
    env_latency_ms = 20.0
    ckpt = tool_policy_checkpoint()
    model, tok = load_checkpoint(ckpt, dtype=torch.float32)
    model.eval()
    engine = VLLMEngine(str(ckpt), max_model_len=1024)
    rng = random.Random(0)
    env = _SlowEnv(LocalEnv(ShortKV), env_latency_ms / 1000)
    specs = [
        EpisodeSpec(
            task=kv_task(rng), env=env, sampling=SamplingSpec(temperature=1.0, max_tokens=256, seed=i)
        )
        for i in range(n)
    ]
    loop = AgentLoop(engine, tok, LoopConfig(max_turn_tokens=128, max_turns=6, env_threads=64))
    loop.run(specs[:4])  # warm up the engine's code paths

    start = time.perf_counter()
    trajs = loop.run(specs)
    agentic_s = time.perf_counter() - start
    generated = sum(t.num_generated for t in trajs)
    length = max(1, round(generated / n))
    prompts = [t.token_ids[: t.prompt_len] for t in trajs]

    raw = SamplingSpec(temperature=1.0, max_tokens=length, ignore_eos=True, seed=1)
    start = time.perf_counter()
    gens = engine.generate(prompts, raw)
    raw_s = time.perf_counter() - start
    raw_tokens = sum(len(g.token_ids) for g in gens)

    sync = engine.load_weights(checkpoint_named_tensors(model))

    hf_prompts = prompts[: 16 if quick else 32]  # HF is slow; its rate is per token, so a subset suffices
    hf_tok_s = _hf_generate_tok_s(model, tok, hf_prompts, length, batch=16 if quick else 32)

    agentic = generated / agentic_s
    raw_rate = raw_tokens / raw_s
    return {
        "agentic_tok_s": round(agentic, 1),
        "raw_vllm_tok_s": round(raw_rate, 1),
        "hf_generate_tok_s": round(hf_tok_s, 1),
        "weight_sync_s": round(sync["seconds"], 3),
        "weight_sync_bytes_per_s": round(sync["bytes_per_s"]),
        "agentic_over_raw": round(agentic / raw_rate, 3),
        "agentic_over_hf": round(agentic / hf_tok_s, 2),
        "episodes": n,
        "generated_tokens": generated,
        "raw_tokens": raw_tokens,
        "mean_turns": round(sum(t.num_turns for t in trajs) / n, 2),
        "tool_calls": sum(t.num_tool_calls for t in trajs),
        "invalid_tool_calls": sum(t.num_invalid_tool_calls for t in trajs),
        "statuses": {s: sum(t.status.value == s for t in trajs) for s in {t.status.value for t in trajs}},
        "env_latency_ms": env_latency_ms,
        "mean_reward": round(sum(t.env_reward or 0.0 for t in trajs) / n, 3),
    }
