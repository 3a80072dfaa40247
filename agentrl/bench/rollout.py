"""`agentrl bench rollout`: multi-turn agentic rollouts vs raw vLLM vs HF generate, plus weight sync, in one run.

Same model (k2-tiny warm-started to emit K2 tool calls, `agentrl.rollout.warmstart`), same prompts (the initial
prompts of the key-value environment's episodes, `ShortKV`), same token counts:
- `agentic_tok_s`: the agent loop (in-process vLLM, `LocalEnv` with `env_latency_ms` per env call) over N episodes;
  generated tokens / wall time. Tool-result prefill and env calls are part of the wall time.
- `raw_vllm_tok_s`: the same engine requests the agent loop made (every turn's exact prompt, forced with
  `ignore_eos` to the length it generated), all in one `generate` call: the same tokens at the same context
  lengths, without turn dependencies or environment waits. The ratio is what the loop costs on top of generation.
- `raw_vllm_single_turn_tok_s`: each initial prompt forced to its episode's whole token count in one call.
  Multi-turn tokens are decoded behind earlier turns and tool results, so they attend over longer contexts; on CPU
  the MLA decode kernel's cost grows with context and prefix caching is off, so this rate is higher.
  `raw_vllm_uniform_tok_s`: every initial prompt forced to the mean length.
- `hf_generate_tok_s`: HF-generate rollouts, TRL's path without vLLM: the same agent loop, episodes and environment
  latency on `HFEngine` (transformers `generate`, left-padded batches, one call per round of ready episodes, as
  TRL's tool loop regenerates for the completions that called a tool). Sampling differs from vLLM's, so its
  episodes are not token-identical; the rate is generated tokens / wall time, like `agentic_tok_s`. A batched
  `generate` runs every row until the batch's longest turn ends, so on k2-tiny on 2 cores smaller batches are
  faster: a sweep put batch 1 first (275 tok/s; 32: 144; 128: 71, BENCHMARKS.md), and `hf_batch` defaults to it,
  the peer path's best setting here.
- `hf_generate_single_turn_tok_s`: transformers `generate` on a subset of the initial prompts, forced to the mean
  episode length in one batch (`min_new_tokens = max_new_tokens`): HF's best case, no turns and short contexts.
  This was `hf_generate_tok_s` until the eighth session.
- `weight_sync_s`: one trainer -> engine sync of all weights (`VLLMEngine.load_weights`).
Targets (issue 6): agentic >= 0.9x raw vLLM; agentic >= 2.5x HF generate.
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
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


def tool_policy_checkpoint(train_steps: int = 200) -> Path:
    """The warm-started tiny policy, built once and cached under runs/bench_cache."""
    from agentrl.rollout.warmstart import train_tool_policy
    from model.checkpoint import init_checkpoint

    out = CACHE / f"k2-tiny-tool-{train_steps}"
    if not (out / "config.json").is_file():
        base = init_checkpoint("k2-tiny", CACHE / "k2-tiny-base", seed=0)
        train_tool_policy(base, out, steps=train_steps)
    return out


def _turn_requests(trajs: list[Any]) -> tuple[list[list[int]], list[int]]:
    """Every engine request an agent-loop run made: each run of generated tokens (loss mask 1) is one request,
    its prompt everything before it."""
    prompts, lengths = [], []
    for t in trajs:
        start = 0
        for generated, run in itertools.groupby(t.loss_mask):
            length = len(list(run))
            if generated:
                prompts.append(t.token_ids[:start])
                lengths.append(length)
            start += length
    return prompts, lengths


def _forced(lengths: list[int]) -> list[Any]:
    from agentrl.engine.base import SamplingSpec

    return [SamplingSpec(temperature=1.0, max_tokens=max(1, n), ignore_eos=True, seed=1) for n in lengths]


def _vllm_generate_tok_s(engine: Any, prompts: list[list[int]], specs: list[Any]) -> tuple[float, int]:
    start = time.perf_counter()
    gens = engine.generate(prompts, specs)
    tokens = sum(len(g.token_ids) for g in gens)
    return tokens / (time.perf_counter() - start), tokens


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


def run(quick: bool = False, rounds_n: int = 3, hf_batch: int = 1) -> dict[str, Any]:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import torch

    from agentrl.engine.base import SamplingSpec
    from agentrl.engine.hf_engine import HFEngine
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
    hf_loop = AgentLoop(
        HFEngine(model, tok, max_batch=hf_batch),
        tok,
        LoopConfig(max_turn_tokens=128, max_turns=6, env_threads=64),
    )
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
    loop.run(specs[:4])  # warm up the engines' code paths
    hf_loop.run(specs[:4])

    # Rounds alternate the three measurements so a load swing on this shared machine hits all of them; the
    # figures are per-round medians, the ratios medians of the per-round ratios.
    rounds: list[dict[str, float]] = []
    for _ in range(rounds_n):
        start = time.perf_counter()
        trajs = loop.run(specs)
        generated = sum(t.num_generated for t in trajs)
        agentic = generated / (time.perf_counter() - start)
        # Raw: the loop's own engine requests (every turn's exact prompt, forced to the length it generated), all
        # in one generate call: the same tokens at the same context lengths, without turn dependencies or env
        # waits. Single-turn: each initial prompt forced to its episode's whole token count (shorter contexts:
        # multi-turn tokens sit behind earlier turns and tool results). Uniform: every initial prompt the mean.
        prompts = [t.token_ids[: t.prompt_len] for t in trajs]
        turn_prompts, turn_lengths = _turn_requests(trajs)
        raw_rate, raw_tokens = _vllm_generate_tok_s(engine, turn_prompts, _forced(turn_lengths))
        single_rate, _ = _vllm_generate_tok_s(engine, prompts, _forced([t.num_generated for t in trajs]))
        length = max(1, round(generated / n))
        uniform_rate, _ = _vllm_generate_tok_s(engine, prompts, _forced([length] * n))
        hf_prompts = prompts[: 16 if quick else 32]  # HF is slow; its rate is per token, so a subset suffices
        hf_single_rate = _hf_generate_tok_s(model, tok, hf_prompts, length, batch=16 if quick else 32)
        start = time.perf_counter()
        hf_trajs = hf_loop.run(specs)
        hf_generated = sum(t.num_generated for t in hf_trajs)
        hf_rate = hf_generated / (time.perf_counter() - start)
        rounds.append(
            {
                "agentic": agentic,
                "raw": raw_rate,
                "single": single_rate,
                "uniform": uniform_rate,
                "hf": hf_rate,
                "hf_single": hf_single_rate,
                "tokens": generated,
                "hf_tokens": hf_generated,
            }
        )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    def med_ratio(key: str) -> float:
        return statistics.median(r["agentic"] / r[key] for r in rounds)

    sync = engine.load_weights(checkpoint_named_tensors(model))

    lengths = sorted(t.num_generated for t in trajs)
    return {
        "agentic_tok_s": round(med("agentic"), 1),
        "raw_vllm_tok_s": round(med("raw"), 1),
        "hf_generate_tok_s": round(med("hf"), 1),
        "weight_sync_s": round(sync["seconds"], 3),
        "weight_sync_bytes_per_s": round(sync["bytes_per_s"]),
        "agentic_over_raw": round(med_ratio("raw"), 3),
        "raw_vllm_single_turn_tok_s": round(med("single"), 1),
        "agentic_over_single_turn": round(med_ratio("single"), 3),
        "raw_vllm_uniform_tok_s": round(med("uniform"), 1),
        "agentic_over_raw_uniform": round(med_ratio("uniform"), 3),
        "agentic_over_hf": round(med_ratio("hf"), 2),
        "hf_generate_single_turn_tok_s": round(med("hf_single"), 1),
        "agentic_over_hf_single_turn": round(med_ratio("hf_single"), 2),
        "hf_mean_turns": round(sum(t.num_turns for t in hf_trajs) / n, 2),
        "hf_batch": hf_batch,
        "rounds": [{k: round(v, 1) for k, v in r.items()} for r in rounds],
        "episode_tokens_p50_max": [lengths[len(lengths) // 2], lengths[-1]],
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
