"""Small builders shared by the optimizer tests (tiny K2 models on CPU)."""

from __future__ import annotations

import torch
from transformers import DeepseekV3ForCausalLM

from model.presets import build_config


def tiny_model(seed: int = 0, boost_qk: float = 1.0, **overrides) -> DeepseekV3ForCausalLM:
    """k2-tiny with a 256-token vocab; `boost_qk` scales the per-head q/k up-projections for larger logits."""
    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(build_config("k2-tiny", **{"vocab_size": 256, **overrides}))
    if boost_qk != 1.0:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "q_b_proj" in name or "q_proj" in name or "kv_b_proj" in name:
                    p.mul_(boost_qk)
    return model


def batch(seed: int = 0, rows: int = 2, seq: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (rows, seq), generator=torch.Generator().manual_seed(seed))


def random_grads(params: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=gen) for p in params]
