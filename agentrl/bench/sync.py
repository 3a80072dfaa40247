"""`agentrl bench sync`: trainer -> in-process vLLM weight sync time and bytes/s, with a correctness check.

One k2-tiny checkpoint; the trainer's weights are perturbed (as an RL step would) and synced `repeats` times.
Reports the median sync time, the bytes moved (every parameter, fp32) and bytes/s, and `sync_logprob_gap`: the
max |vLLM logprob - log_softmax(transformers logits / T)| over sampled tokens after the last sync (a broken sync
shows > 0.1; agentrl/engine/weight_sync.py).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from typing import Any


def run(quick: bool = False) -> dict[str, Any]:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    import torch

    from agentrl.engine.base import SamplingSpec
    from agentrl.engine.vllm_engine import VLLMEngine
    from model.checkpoint import init_checkpoint, load_checkpoint
    from model.weights import checkpoint_named_tensors

    repeats = 2 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        path = init_checkpoint("k2-tiny", os.path.join(tmp, "ck"), seed=0)
        model, _ = load_checkpoint(path, dtype=torch.float32)
        model.eval()
        engine = VLLMEngine(str(path), kv_cache_memory_bytes=128 * 1024**2)
        times, nbytes = [], 0
        for i in range(repeats):
            torch.manual_seed(i)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p) * 0.01 * p.std().clamp(min=1e-3))
            stats = engine.load_weights(checkpoint_named_tensors(model))
            times.append(stats["seconds"])
            nbytes = int(stats["bytes"])
        prompts = [[1, 5, 100 + i, 7] for i in range(8)]
        temperature = 0.8
        gens = engine.generate(prompts, SamplingSpec(temperature=temperature, max_tokens=16, seed=0))
        gap = 0.0
        with torch.no_grad():
            for prompt, g in zip(prompts, gens, strict=True):
                logits = model(torch.tensor([prompt + g.token_ids])).logits[0]
                lp = torch.log_softmax(logits / temperature, -1)
                for j, t in enumerate(g.token_ids):
                    gap = max(gap, abs(lp[len(prompt) + j - 1, t].item() - g.logprobs[j]))
    median = statistics.median(times)
    return {
        "weight_sync_s": round(median, 4),
        "weight_sync_bytes": nbytes,
        "weight_sync_bytes_per_s": round(nbytes / median),
        "weight_sync_runs": [round(t, 4) for t in times],
        "sync_logprob_gap": round(gap, 5),
        "params": sum(p.numel() for p in model.parameters()),
    }
