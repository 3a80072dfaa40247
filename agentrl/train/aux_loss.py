"""Auxiliary losses mixed into the RL update: L = L_RL + Σ_a β_a · L_a.

PTX (ptx.py) is one; the closed-loop critic refinement (`CriticRefinementLoss`) is another. An auxiliary loss is
an object with a `name`, a weight `beta`, `solo_steps` (optimizer steps on it alone after each RL update),
`refresh()` (pull data produced since the last step), `next_batch()` (a right-padded `(input_ids_BT,
attention_mask_BT, loss_mask_BT)` or None when it has no data yet), `loss(model, *batch)`, `metrics()` (logged
every step) and `state_dict()` / `load_state_dict()` so a resumed run continues bit for bit.

Critic refinement (K2 §3.2.2, "closed-loop critic refinement"): the reward function turns on-policy rollouts of
verifiable tasks into pairwise critic examples whose correct verdict is known (rewards/critic_data.py); this loss
trains the policy to emit that verdict. K2 does not give the mechanism or its weight (k2.md §4.4): ours is a loss
on the verdict over a replay buffer of the most recent examples, either the next-token NLL of the verdict turn or
the cross-entropy over the two letters at the letter's position (`letter_margin`, see `loss`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from agentrl.rewards.engine_critic import verdict_choice_tokens
from agentrl.train.ptx import SFTExample, pad_examples, ptx_loss, tokenize_chat


class AuxLoss(Protocol):
    name: str
    beta: float
    solo_steps: int
    """Optimizer steps on this loss alone after each RL update (0: only its batch inside the RL step)."""

    def refresh(self) -> None: ...

    def next_batch(self) -> tuple[Tensor, Tensor, Tensor] | None: ...

    def loss(
        self, model: Any, input_ids_BT: Tensor, attention_mask_BT: Tensor, loss_mask_BT: Tensor
    ) -> Tensor:
        """The (unweighted) loss of one `next_batch()`."""
        ...

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
        verdict_loss: Literal["nll", "letter_margin"] = "nll",
        solo_steps: int = 0,
    ) -> None:
        self.drain, self.tokenizer, self.verdict_loss = drain, tokenizer, verdict_loss
        self.solo_steps = solo_steps
        letters = {letter: tid for tid, letter in verdict_choice_tokens(tokenizer)[1].items()}
        self.letter_ids = (letters["A"], letters["B"])
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
        self.add(self.drain())  # CriticExample records from the reward function

    def add(self, examples: Sequence[Any]) -> None:
        """Tokenize `examples` (`CriticExample`s) into the buffer; the newest `buffer_size` are kept."""
        for ex in examples:
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

    def loss(
        self, model: Any, input_ids_BT: Tensor, attention_mask_BT: Tensor, loss_mask_BT: Tensor
    ) -> Tensor:
        """`nll`: next-token NLL of the whole verdict turn (`[[A]]<|im_end|>`). `letter_margin`: cross-entropy over
        the two letters only, at the letter's position, i.e. -log sigmoid of the A-vs-B margin the swap-debiased
        critic decides by; it starts at log 2 instead of the ~14 nats an unseen verdict format costs, so the whole
        gradient goes to which response is better rather than to the format, and it moves no other token."""
        if self.verdict_loss == "nll":
            return ptx_loss(model, input_ids_BT, attention_mask_BT, loss_mask_BT)
        logits_BTV = model(input_ids=input_ids_BT, attention_mask=attention_mask_BT).logits[:, :-1].float()
        targets_BT = input_ids_BT[:, 1:]
        a_id, b_id = self.letter_ids
        at_letter_BT = loss_mask_BT[:, 1:].bool() & ((targets_BT == a_id) | (targets_BT == b_id))
        letters_per_row_B = at_letter_BT.sum(1)
        if bool((letters_per_row_B != 1).any()):
            raise ValueError(
                f"letter_margin needs exactly one verdict letter (A or B) under each row's loss mask; found "
                f"{letters_per_row_B.tolist()} in a batch of {input_ids_BT.shape[0]}"
            )
        letters_N2 = logits_BTV[at_letter_BT][:, [a_id, b_id]]
        return torch.nn.functional.cross_entropy(letters_N2, (targets_BT[at_letter_BT] == b_id).long())

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
