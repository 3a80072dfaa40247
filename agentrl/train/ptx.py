"""PTX: an auxiliary next-token loss on a curated SFT set, mixed into the RL objective (K2 §3.2.3).

K2 adds "a hand-curated set of high-quality samples" as an auxiliary loss, as InstructGPT's PTX, to prevent
forgetting; weight and mixing ratio are not specified (k2.md §4.2). Reconstructed form:

    L = L_RL + β · L_PTX,   L_PTX = −mean over assistant tokens of log π_θ(token | context)   (at T = 1)

The SFT set is a list of tokenized chat examples with assistant-only masks (`tokenize_chat`). Each step draws
`batch_size` examples from a seeded permutation; the sampler's position is part of the checkpoint so a resumed run
sees the same examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from agentrl.errors import ConfigError
from model.chat_format import DEFAULT_SYSTEM, render_assistant_body, render_message, render_tools
from model.special_tokens import IM_ASSISTANT, IM_END, IM_MIDDLE, IM_SYSTEM


@dataclass(frozen=True)
class SFTExample:
    token_ids: list[int]
    loss_mask: list[int]  # 1 on assistant-generated tokens


def tokenize_chat(
    messages: list[dict[str, Any]], tokenizer: Any, tools: list[dict[str, Any]] | None = None
) -> SFTExample:
    """Tokenize a chat in K2's format; only assistant bodies (text, tool calls, `<|im_end|>`) are trained on.

    Segments are tokenized separately; every boundary is a special token, so this equals tokenizing the whole text.
    """
    segments: list[tuple[str, int]] = []
    if tools:
        segments.append((render_tools(tools), 0))
    if messages and messages[0]["role"] != "system":
        segments.append((f"{IM_SYSTEM}system{IM_MIDDLE}{DEFAULT_SYSTEM}{IM_END}", 0))
    for msg in messages:
        if msg["role"] == "assistant":
            segments.append((f"{IM_ASSISTANT}{msg.get('name') or 'assistant'}{IM_MIDDLE}", 0))
            segments.append((render_assistant_body(msg), 1))
        else:
            segments.append((render_message(msg), 0))
    ids: list[int] = []
    mask: list[int] = []
    for text, m in segments:
        piece = tokenizer.encode(text, add_special_tokens=False)
        ids += piece
        mask += [m] * len(piece)
    if not any(mask):
        raise ConfigError("PTX example has no assistant message to train on")
    return SFTExample(ids, mask)


def ptx_examples_from_records(
    records: Sequence[dict[str, Any]], tokenizer: Any, max_length: int
) -> list[SFTExample]:
    """PTX examples from SFT-format records (`{"messages": [...], "tools": [...]}`), tokenized exactly as the SFT
    stage does (`agentrl.train.sft.tokenize_records`: the chat template's assistant masks)."""
    from agentrl.train.sft import tokenize_records

    columns, _ = tokenize_records(list(records), tokenizer, max_length)
    return [
        SFTExample(ids, mask)
        for ids, mask in zip(columns["input_ids"], columns["assistant_masks"], strict=True)
    ]


def pad_examples(examples: Sequence[SFTExample], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded (input_ids_BT, attention_mask_BT, loss_mask_BT)."""
    width = max(len(e.token_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    mask = torch.zeros((len(examples), width), dtype=torch.float32)
    for i, e in enumerate(examples):
        n = len(e.token_ids)
        ids[i, :n] = torch.tensor(e.token_ids)
        attn[i, :n] = 1
        mask[i, :n] = torch.tensor(e.loss_mask, dtype=torch.float32)
    return ids, attn, mask


def ptx_loss(
    model: torch.nn.Module, input_ids_BT: Tensor, attention_mask_BT: Tensor, loss_mask_BT: Tensor
) -> Tensor:
    """Mean next-token NLL over masked tokens (T = 1)."""
    logits_BTV = model(input_ids=input_ids_BT, attention_mask=attention_mask_BT).logits[:, :-1].float()
    targets_BT = input_ids_BT[:, 1:]
    nll_BT = torch.nn.functional.cross_entropy(logits_BTV.transpose(1, 2), targets_BT, reduction="none")
    mask_BT = loss_mask_BT[:, 1:].to(nll_BT.dtype)
    return (nll_BT * mask_BT).sum() / mask_BT.sum().clamp(min=1)


class PTXSampler:
    """Draws fixed-size batches of SFT examples from per-epoch seeded permutations; resumable."""

    def __init__(self, examples: Sequence[SFTExample], batch_size: int, pad_id: int, seed: int = 0) -> None:
        if not examples:
            raise ConfigError("PTX is enabled (ptx.beta > 0) but the PTX data set is empty")
        if batch_size <= 0:
            raise ConfigError(f"ptx.batch_size must be > 0, got {batch_size}")
        self.examples = list(examples)
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.seed = seed
        self.epoch = 0
        self.cursor = 0

    def _order(self) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.examples), generator=gen).tolist()

    def next_batch(self) -> tuple[Tensor, Tensor, Tensor]:
        """(input_ids_BT, attention_mask_BT, loss_mask_BT), right-padded."""
        picked: list[SFTExample] = []
        order = self._order()
        while len(picked) < self.batch_size:
            if self.cursor >= len(order):
                self.epoch += 1
                self.cursor = 0
                order = self._order()
            picked.append(self.examples[order[self.cursor]])
            self.cursor += 1
        return pad_examples(picked, self.pad_id)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
