"""Auxiliary next-token losses mixed into the RL update: L = L_RL + Σ_a β_a · L_a.

PTX (ptx.py) is one; the closed-loop critic refinement (`CriticRefinementLoss`) is another. An auxiliary loss is
an object with a `name`, a weight `beta`, `refresh()` (pull data produced since the last step), `next_batch()`
(a right-padded `(input_ids_BT, attention_mask_BT, loss_mask_BT)` or None when it has no data yet) and
`metrics()` (logged every step) and `state_dict()` / `load_state_dict()` so a resumed run continues bit for bit.

Critic refinement (K2 §3.2.2, "closed-loop critic refinement"): the reward function turns on-policy rollouts of
verifiable tasks into pairwise critic examples whose correct verdict is known (rewards/critic_data.py); this loss
trains the policy to emit that verdict. K2 does not give the mechanism or its weight (k2.md §4.4): ours is an
SFT-style loss on the verdict tokens, `beta` × mean NLL, over a replay buffer of the most recent examples.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor

from agentrl.train.ptx import SFTExample, pad_examples, tokenize_chat


class AuxLoss(Protocol):
    name: str
    beta: float

    def refresh(self) -> None: ...

    def next_batch(self) -> tuple[Tensor, Tensor, Tensor] | None: ...

    def metrics(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CriticRefinementLoss:
    """Trains the policy-as-critic on verdicts known from verifiable rewards (a replay buffer, newest kept)."""

    name = "critic"

    def __init__(
        self,
        drain: Callable[[], list[Any]],
        tokenizer: Any,
        *,
        beta: float,
        batch_size: int,
        max_tokens: int,
        buffer_size: int = 512,
        seed: int = 0,
    ) -> None:
        self.drain, self.tokenizer = drain, tokenizer
        self.beta, self.batch_size, self.max_tokens, self.buffer_size = (
            beta,
            batch_size,
            max_tokens,
            buffer_size,
        )
        self.buffer: list[SFTExample] = []
        self.rng = random.Random(seed)
        self.too_long = 0
        self.seen = 0

    def refresh(self) -> None:
        for ex in self.drain():  # CriticExample records from the reward function
            record = ex.sft_record()
            tokenized = tokenize_chat(record["messages"], self.tokenizer)
            self.seen += 1
            if len(tokenized.token_ids) > self.max_tokens:
                self.too_long += 1
                continue
            self.buffer.append(tokenized)
        del self.buffer[: max(0, len(self.buffer) - self.buffer_size)]

    def next_batch(self) -> tuple[Tensor, Tensor, Tensor] | None:
        if not self.buffer:
            return None
        picked = [self.buffer[self.rng.randrange(len(self.buffer))] for _ in range(self.batch_size)]
        return pad_examples(picked, self.tokenizer.pad_token_id)

    def metrics(self) -> dict[str, float]:
        return {
            "critic/buffer": float(len(self.buffer)),
            "critic/examples_seen": float(self.seen),
            "critic/examples_too_long": float(self.too_long),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "buffer": [(e.token_ids, e.loss_mask) for e in self.buffer],
            "rng": self.rng.getstate(),
            "too_long": self.too_long,
            "seen": self.seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = [SFTExample(list(ids), list(mask)) for ids, mask in state["buffer"]]
        self.rng.setstate(state["rng"])
        self.too_long, self.seen = int(state["too_long"]), int(state["seen"])
