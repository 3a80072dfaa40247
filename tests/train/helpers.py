"""Shared tiny fixtures: a 2-layer k2-tiny policy (one dense, one 16-expert MoE layer) and a fixed task pool."""

from __future__ import annotations

import torch
from transformers import DeepseekV3ForCausalLM

from agentrl.schemas.trajectory import Trajectory
from agentrl.train.sources import PoolResponse, PoolTask
from model.presets import build_config

VOCAB = 256
PAD = 0


def tiny_model(seed: int = 0, layers: int = 2) -> DeepseekV3ForCausalLM:
    torch.manual_seed(seed)
    return DeepseekV3ForCausalLM(build_config("k2-tiny", vocab_size=VOCAB, num_hidden_layers=layers))


def pool_tasks(
    n: int = 6, seed: int = 1, prompt_len: int = 8, responses: int = 4, logprobs: bool = False
) -> list[PoolTask]:
    """Tasks of two types with `responses` fixed candidate answers each; rewards alternate 0/1 so groups vary.
    With `logprobs`, each response carries "engine" logprobs near the uniform log(1/256) = -5.55."""
    g = torch.Generator().manual_seed(seed)
    g_lp = torch.Generator().manual_seed(seed + 1)
    tasks = []
    for i in range(n):
        prompt = torch.randint(3, VOCAB, (prompt_len,), generator=g).tolist()
        resps = [
            PoolResponse(
                token_ids=torch.randint(3, VOCAB, (6 + j,), generator=g).tolist(),
                reward=float(j % 2),
                logprobs=(-5.55 + 0.1 * torch.randn(6 + j, generator=g_lp)).tolist() if logprobs else None,
            )
            for j in range(responses)
        ]
        tasks.append(
            PoolTask(id=f"t{i}", task_type="math" if i % 2 else "tool_use", prompt=prompt, responses=resps)
        )
    return tasks


@torch.no_grad()
def sample(model, prompt: list[int], n_new: int, temperature: float, gen: torch.Generator) -> Trajectory:
    """Sample from the policy with torch and record log_softmax(logits / T) of each sampled token (as vLLM's
    processed_logprobs do)."""
    ids = list(prompt)
    lps: list[float | None] = [None] * len(prompt)
    for _ in range(n_new):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float() / temperature
        logp = torch.log_softmax(logits, -1)
        tok = int(torch.multinomial(logp.exp(), 1, generator=gen))
        ids.append(tok)
        lps.append(float(logp[tok]))
    return Trajectory(
        id=f"s{len(ids)}-{gen.initial_seed()}",
        task_id="t",
        token_ids=ids,
        loss_mask=[0] * len(prompt) + [1] * n_new,
        logprobs=lps,
        prompt_len=len(prompt),
        sampling={"temperature": temperature},
    )
