"""The policy as its own critic, through the rollout engine (K2 §3.2.2: "the policy model itself acts as critic").

`EngineCritic` is a `CriticFn` (self_critique.py): it renders each pairwise critic prompt with the policy's chat
template, appends the verdict's common prefix (`[[`) as the start of the assistant turn, and asks the engine for
ONE token restricted to the two verdict letters (vLLM `allowed_token_ids`) at temperature 0, with both letters'
log-probs (`candidate_token_ids`). Its margin is m = log P(A) - log P(B). Batched in one `generate` call, so critic
calls share the rollout engine and its weights (synced after every update).

Two verdict rules (`verdict`):
- `forced`: the letter with the larger log-prob (the argmax the closed-loop refinement trains,
  `critic_data.CriticExample.sft_record`). A small policy cannot abstain by rambling, but it has a position prior:
  a tiny critic picks one letter for nearly every prompt (BENCHMARKS.md, "critic").
- `swap_debiased` (default): when the batch holds both orders of a pair (`critic_prompt.swap_key`; the
  self-critique reward and the critic's accuracy always ask both), the pair is decided by the sum of the two
  orders' preferences, s = m(x as A, y as B) - m(y as A, x as B): x wins if s > 0. A constant lean toward one
  position adds to both margins and cancels in s, so only what the critic reads in the responses decides; both
  orders then name the same winner. This is the swap-and-combine debiasing of LLM-as-judge evaluations (Zheng et
  al. 2023, "Judging LLM-as-a-judge", §3.4), applied to log-probs instead of to two discrete verdicts so that a
  strongly biased critic is not reduced to ties. A prompt without its partner in the batch, or an engine that
  returns no candidate log-probs, falls back to `forced` (counted).

Deviation: K2's critic may reason before its verdict; forced choice drops that (reasoning a 4M-parameter policy
cannot do). Prompts longer than `max_prompt_tokens` abstain (None) and are counted.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from agentrl.engine.base import SamplingSpec
from agentrl.rewards.critic_data import CriticAccuracy, CriticExample, evaluate_critic
from agentrl.rewards.critic_prompt import VERDICT_TOKENS, swap_key

VerdictRule = Literal["forced", "swap_debiased"]
VERDICT_RULES: tuple[VerdictRule, ...] = ("forced", "swap_debiased")


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


def swap_debiased_letters(
    margins: list[float | None], keys: list[tuple[tuple[str, ...], bool] | None]
) -> tuple[list[str | None], int]:
    """Per prompt "A" / "B" / "tie" / None from its margin and its swap partner's; also how many prompts had no
    partner (decided by their own margin). `keys[i]` is `swap_key` of prompt i."""
    partner: dict[tuple[tuple[str, ...], bool], int] = {}
    for i, k in enumerate(keys):
        if k is not None and margins[i] is not None:
            partner.setdefault(k, i)
    letters: list[str | None] = []
    alone = 0
    for m, k in zip(margins, keys, strict=True):
        if m is None:
            letters.append(None)
            continue
        if k is not None and k[0][2] == k[0][3]:
            letters.append("tie")  # the same response twice: there is nothing to prefer
            continue
        j = partner.get((k[0], not k[1])) if k is not None else None
        if j is None or not math.isfinite(m) or not math.isfinite(margins[j]):  # type: ignore[arg-type]
            alone += 1  # decided by this order alone (no partner, or only a letter without log-probs)
            s = m
        else:
            s = m - margins[j]  # type: ignore[operator]
        letters.append("A" if s > 0 else "B" if s < 0 else "tie")
    return letters, alone


class EngineCritic:
    """`CriticFn` over an `InferenceEngine` holding the policy's current weights."""

    def __init__(
        self, engine: Any, tokenizer: Any, *, max_prompt_tokens: int, verdict: VerdictRule = "swap_debiased"
    ) -> None:
        self.engine, self.tokenizer, self.max_prompt_tokens = engine, tokenizer, max_prompt_tokens
        self.verdict = verdict
        self.prefix, self.choices = verdict_choice_tokens(tokenizer)
        self.letter_ids = {letter: tid for tid, letter in self.choices.items()}
        self.calls = 0
        self.too_long = 0
        self.unpaired = (
            0  # swap_debiased prompts decided by one order (no partner, or no candidate log-probs)
        )
        self.picked_a = 0  # forced-choice letters before debiasing: the position prior
        self.decided = 0

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """Token ids the verdict letter is predicted from: the chat up to the assistant turn, then `[[`."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer.encode(text, add_special_tokens=False) + self.prefix

    def margins(self, batch: list[list[dict[str, Any]]]) -> list[float | None]:
        """log P(A) - log P(B) per prompt (None: too long); +/-inf from engines without candidate log-probs."""
        self.calls += len(batch)
        prompts = [self.prompt_ids(m) for m in batch]
        fits = [i for i, p in enumerate(prompts) if len(p) < self.max_prompt_tokens]
        self.too_long += len(batch) - len(fits)
        out: list[float | None] = [None] * len(batch)
        if not fits:
            return out
        spec = SamplingSpec(
            temperature=0.0,
            max_tokens=1,
            allowed_token_ids=tuple(self.choices),
            candidate_token_ids=tuple(self.choices),
        )
        gens = self.engine.generate([prompts[i] for i in fits], [spec] * len(fits))
        for i, gen in zip(fits, gens, strict=True):
            letter = self.choices.get(gen.token_ids[0]) if gen.token_ids else None
            candidates = (gen.extra.get("candidate_logprobs") or [None])[0]
            if candidates:
                out[i] = candidates[self.letter_ids["A"]] - candidates[self.letter_ids["B"]]
            elif letter:
                out[i] = float("inf") if letter == "A" else float("-inf")
            if out[i] is not None:
                self.decided += 1
                self.picked_a += out[i] > 0  # type: ignore[operator]
        return out

    def __call__(self, batch: list[list[dict[str, Any]]]) -> list[str | None]:
        return self.decide(batch, self.margins(batch))

    def decide(
        self,
        batch: list[list[dict[str, Any]]],
        margins: list[float | None],
        verdict: VerdictRule | None = None,
    ) -> list[str | None]:
        """Verdict tokens from `margins` (of `batch`) under `verdict` (default: this critic's rule), so one engine
        pass can be read under both rules."""
        if (verdict or self.verdict) == "forced":
            letters = [None if m is None else "A" if m > 0 else "B" for m in margins]
        else:
            letters, alone = swap_debiased_letters(margins, [swap_key(m) for m in batch])
            self.unpaired += alone
        return [VERDICT_TOKENS[x] if x else None for x in letters]  # type: ignore[index]

    def metrics(self) -> dict[str, float]:
        return {
            "critic/prompts": float(self.calls),
            "critic/too_long": float(self.too_long),
            "critic/unpaired": float(self.unpaired),
            "critic/forced_a_rate": self.picked_a / self.decided if self.decided else 0.5,
        }


def accuracy_by_rule(
    critic: EngineCritic, examples: list[CriticExample], margins: list[float | None] | None = None
) -> dict[VerdictRule, CriticAccuracy]:
    """The critic's accuracy on `examples` under each verdict rule, from one engine pass (or from `margins`, the
    critic's margins on these examples, already computed)."""
    batch = [e.messages for e in examples]
    if margins is None:
        margins = critic.margins(batch)
    return {
        rule: evaluate_critic(lambda b, rule=rule: critic.decide(b, margins, rule), examples)
        for rule in VERDICT_RULES
    }
