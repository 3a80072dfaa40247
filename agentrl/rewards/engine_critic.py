"""The policy as its own critic, through the rollout engine (K2 §3.2.2: "the policy model itself acts as critic").

`EngineCritic` is a `CriticFn` (self_critique.py): it renders each pairwise critic prompt with the policy's chat
template, appends the verdict's common prefix (`[[`) as the start of the assistant turn, and asks the engine for
ONE token restricted to the two verdict letters (vLLM `allowed_token_ids`) at temperature 0. The verdict is then
always `[[A]]` or `[[B]]`: a small policy cannot abstain by rambling, and the verdict is the argmax of the same
distribution the closed-loop refinement trains (`critic_data.CriticExample.sft_record`). Batched in one
`generate` call, so critic calls share the rollout engine and its weights (synced after every update).

Deviation: K2's critic may reason before its verdict; forced choice drops that (reasoning a 4M-parameter policy
cannot do). Prompts longer than `max_prompt_tokens` abstain (None) and are counted.
"""

from __future__ import annotations

from typing import Any

from agentrl.engine.base import SamplingSpec
from agentrl.rewards.critic_prompt import VERDICT_TOKENS


def verdict_choice_tokens(tokenizer: Any) -> tuple[list[int], dict[int, str]]:
    """(prefix ids shared by `[[A]]` and `[[B]]`, {token id at the first difference: "A" | "B"})."""
    a = tokenizer.encode(VERDICT_TOKENS["A"], add_special_tokens=False)
    b = tokenizer.encode(VERDICT_TOKENS["B"], add_special_tokens=False)
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if i >= min(len(a), len(b)):
        raise ValueError(f"tokenizer encodes {VERDICT_TOKENS['A']!r} and {VERDICT_TOKENS['B']!r} identically")
    return a[:i], {a[i]: "A", b[i]: "B"}


class EngineCritic:
    """`CriticFn` over an `InferenceEngine` holding the policy's current weights."""

    def __init__(self, engine: Any, tokenizer: Any, *, max_prompt_tokens: int) -> None:
        self.engine, self.tokenizer, self.max_prompt_tokens = engine, tokenizer, max_prompt_tokens
        self.prefix, self.choices = verdict_choice_tokens(tokenizer)
        self.calls = 0
        self.too_long = 0

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids the verdict letter is predicted from: the chat up to the assistant turn, then `[[`."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer.encode(text, add_special_tokens=False) + self.prefix

    def __call__(self, batch: list[list[dict[str, Any]]]) -> list[str | None]:
        self.calls += len(batch)
        prompts = [self.prompt_ids(m) for m in batch]
        fits = [i for i, p in enumerate(prompts) if len(p) < self.max_prompt_tokens]
        self.too_long += len(batch) - len(fits)
        out: list[str | None] = [None] * len(batch)
        if not fits:
            return out
        spec = SamplingSpec(temperature=0.0, max_tokens=1, allowed_token_ids=tuple(self.choices))
        gens = self.engine.generate([prompts[i] for i in fits], [spec] * len(fits))
        for i, gen in zip(fits, gens, strict=True):
            letter = self.choices.get(gen.token_ids[0]) if gen.token_ids else None
            out[i] = VERDICT_TOKENS[letter] if letter else None  # type: ignore[index]
        return out

    def metrics(self) -> dict[str, float]:
        return {"critic/prompts": float(self.calls), "critic/too_long": float(self.too_long)}
