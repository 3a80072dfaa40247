"""Critic warm-up: the policy learns to judge pairs of responses before RL starts.

K2 §3.2.2 initialises the critic ability in SFT and then refines it in closed loop during RL. Here the warm-up is a
short phase after SFT on synth critic pairs (`agentrl/synth/critic_pairs.py`: a demonstration and the same task
replayed with one mistake, labelled by tool_world's verifiable reward), in both orders and in exactly the prompt the
RL critic sees.

The loss is `letter_margin` (`CriticRefinementLoss.loss`): cross-entropy over the two verdict letters at the letter's
position, i.e. -log sigmoid of the A-vs-B margin that the swap-debiased critic decides by. The next-token loss on the
whole verdict turn, which the TRL `sft_critic` phase uses, first has to teach an unseen format (`[[A]]`, ~14 nats)
and teaches the policy to open its own turns with `[[`: 100 such steps left the demo's policy without a single
valid tool call (BENCHMARKS.md, "Fifth session"). The margin loss moves no token but the two letters' difference.
PTX on SFT transcripts rides along so the policy keeps its format. Deviation: K2 mixes critic data into SFT; a
separate phase is cheaper to measure and to switch off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CriticWarmupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    steps: int = Field(0, ge=0)
    """Optimizer steps (0: no warm-up)."""
    batch_size: int = Field(8, ge=1)
    """Critic examples per step."""
    lr: float = Field(3e-3, gt=0)
    """MuonClip learning rate, constant."""
    ptx_beta: float = Field(0.5, ge=0)
    """Weight of the next-token loss on SFT transcripts in each step (0: critic examples only; 100 such steps left the
    demo's policy without a success in its first 64 RL samples, 17 without the phase: Muon moves every matrix by the
    full learning rate however small the critic's gradient is; BENCHMARKS.md, "Eighteenth session")."""
    ptx_batch_size: int = Field(8, ge=1)
    max_tokens: int = Field(1023, ge=16)
    """Critic prompts longer than this are skipped and counted (the engine's context less the letter)."""
    logging_steps: int = Field(10, ge=1)


def run_critic_warmup(
    checkpoint: str | Path,
    examples: Sequence[Any],
    transcripts: Sequence[dict[str, Any]],
    cfg: CriticWarmupConfig,
    out_dir: str | Path,
    seed: int = 0,
) -> dict[str, Any]:
    """Train `checkpoint` on `examples` (`CriticExample`s) with the letter-margin loss, plus PTX on `transcripts`
    (OpenAI-format records); save `out_dir/final` and `out_dir/metrics.jsonl`."""
    import torch

    from agentrl.optim.build import build_muonclip
    from agentrl.optim.config import MuonClipConfig
    from agentrl.train.aux_loss import CriticRefinementLoss
    from agentrl.train.ptx import PTXSampler, ptx_examples_from_records, ptx_loss
    from model.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_checkpoint(checkpoint, dtype=torch.float32)
    critic = CriticRefinementLoss(
        lambda: [],
        tokenizer,
        beta=1.0,
        batch_size=cfg.batch_size,
        max_tokens=cfg.max_tokens,
        buffer_size=max(1, len(examples)),
        seed=seed,
        verdict_loss="letter_margin",
    )
    critic.add(examples)
    if not critic.buffer:
        raise ValueError(
            f"critic warm-up: none of {len(examples)} critic examples fits {cfg.max_tokens} tokens"
        )
    ptx = None
    if cfg.ptx_beta > 0:
        ptx_examples = ptx_examples_from_records(list(transcripts), tokenizer, cfg.max_tokens + 1)
        ptx = PTXSampler(ptx_examples, cfg.ptx_batch_size, tokenizer.pad_token_id, seed)
    optimizer = build_muonclip(model, MuonClipConfig(lr=cfg.lr, weight_decay=0.0))
    model.train()
    start = time.time()
    with (out / "metrics.jsonl").open("w") as log:
        for step in range(1, cfg.steps + 1):
            loss_critic = critic.loss(model, *critic.next_batch())
            loss = loss_critic
            row = {"step": step, "loss/critic": float(loss_critic.detach())}
            if ptx is not None:
                loss_ptx = ptx_loss(model, *ptx.next_batch())
                loss = loss + cfg.ptx_beta * loss_ptx
                row["loss/ptx"] = float(loss_ptx.detach())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step % cfg.logging_steps == 0 or step == cfg.steps:
                log.write(json.dumps({**row, "wall_s": round(time.time() - start, 2)}) + "\n")
    model.eval()
    final = save_checkpoint(model, tokenizer, out / "final")
    return {
        "checkpoint": str(final),
        "steps": cfg.steps,
        "wall_s": time.time() - start,
        "examples": len(critic.buffer),
        "examples_too_long": critic.too_long,
    }
