"""Closed-loop critic refinement data (K2 §3.2.2): critic examples from on-policy rollouts of verifiable
tasks, and the critic's pairwise accuracy on held-out verifiable pairs.

During RL, the K samples of a verifiable prompt have known rewards (tests, answers, final states). Every pair
whose verifiable rewards differ by more than `min_margin` is a critic example whose correct verdict is the
better sample; each pair is emitted in both orders (better shown as A, then as B) so the critic cannot learn a
position shortcut. The trainer adds these as an auxiliary next-token loss on the verdict token (mechanism and
cadence are unspecified in K2; see docs/rewards.md). Groups, not examples, are split into train/held-out so
no prompt leaks across. Accuracy counts abstentions and ties as wrong, and also reports order consistency.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any, Literal

from pydantic import BaseModel

from agentrl.rewards.critic_prompt import (
    VERDICT_TOKENS,
    CriticPromptConfig,
    build_critic_messages,
    parse_critic_verdict,
)
from agentrl.rewards.pairwise import Winner
from agentrl.rewards.rubrics import RubricSet
from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus


class CriticExample(BaseModel):
    messages: list[dict[str, Any]]
    target: Literal["A", "B"]
    group_id: str
    pair_key: str
    a_id: str
    b_id: str
    reward_a: float
    reward_b: float

    def sft_record(self) -> dict[str, Any]:
        """OpenAI-format record with the verdict as the assistant turn (loss on that turn only)."""
        return {"messages": [*self.messages, {"role": "assistant", "content": VERDICT_TOKENS[self.target]}]}


def default_verifiable_reward(t: Trajectory) -> float | None:
    """The verifiable part of a trajectory's reward: `reward_details["verifiable"]`, else the env's reward."""
    v = t.reward_details.get("verifiable")
    return float(v) if v is not None else t.env_reward


def build_critic_examples(
    rollouts: Sequence[Trajectory],
    rubrics: RubricSet,
    *,
    reward_of: Callable[[Trajectory], float | None] = default_verifiable_reward,
    min_margin: float = 1e-6,
    max_pairs_per_group: int | None = None,
    seed: int = 0,
    prompt: CriticPromptConfig | None = None,
) -> list[CriticExample]:
    """Group rollouts by `group_id` (else `task_id`); emit both orders of every pair with differing reward."""
    groups: dict[str, list[tuple[Trajectory, float]]] = defaultdict(list)
    for t in rollouts:
        r = reward_of(t)
        if r is None or t.status is TrajectoryStatus.failed:
            continue  # an infrastructure failure says nothing about quality
        groups[t.group_id or t.task_id].append((t, r))
    rng = random.Random(seed)
    out: list[CriticExample] = []
    for gid in sorted(groups):
        members = groups[gid]
        pairs = [(x, y) for x, y in combinations(members, 2) if abs(x[1] - y[1]) > min_margin]
        if max_pairs_per_group is not None and len(pairs) > max_pairs_per_group:
            pairs = rng.sample(pairs, max_pairs_per_group)
        domain = members[0][0].metadata.get("domain")
        rub = rubrics.for_task(members[0][0].task_id, domain)
        for (ta, ra), (tb, rb) in pairs:
            key = f"{gid}:{min(ta.id, tb.id)}|{max(ta.id, tb.id)}"
            for (t1, r1), (t2, r2) in (((ta, ra), (tb, rb)), ((tb, rb), (ta, ra))):
                out.append(
                    CriticExample(
                        messages=build_critic_messages(t1, t1, t2, rub, prompt),
                        target="A" if r1 > r2 else "B",
                        group_id=gid,
                        pair_key=key,
                        a_id=t1.id,
                        b_id=t2.id,
                        reward_a=r1,
                        reward_b=r2,
                    )
                )
    return out


def examples_from_pairs(
    pairs: Sequence[dict[str, Any]], rubrics: RubricSet, prompt: CriticPromptConfig | None = None
) -> list[CriticExample]:
    """Critic examples (both orders) from synth critic pairs (`agentrl/synth/critic_pairs.py`: a demonstration and
    the same task replayed with one mistake, each with tool_world's verifiable reward), built by
    `build_critic_examples` itself, so the prompt is exactly the one the critic sees in RL."""
    trajectories = []
    for pair in pairs:
        for side in ("good", "bad"):
            trajectories.append(
                Trajectory(
                    id=f"{pair['id']}.{side}",
                    task_id=pair["task_id"],
                    group_id=pair["id"],
                    messages=pair[side]["messages"],
                    env_reward=float(pair[side]["reward"]),
                    metadata={"domain": pair.get("domain")},
                )
            )
    return build_critic_examples(trajectories, rubrics, prompt=prompt)


def _in_holdout(group_id: str, fraction: float, seed: int) -> bool:
    h = int(hashlib.sha256(f"{seed}:{group_id}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def split_by_group(
    examples: Sequence[CriticExample], holdout_fraction: float = 0.2, seed: int = 0
) -> tuple[list[CriticExample], list[CriticExample]]:
    """(train, held_out); a group's examples all land on the same side, stably across calls."""
    if not 0.0 <= holdout_fraction <= 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1], got {holdout_fraction}")
    train, held = [], []
    for ex in examples:
        (held if _in_holdout(ex.group_id, holdout_fraction, seed) else train).append(ex)
    return train, held


class CriticAccuracy(BaseModel):
    accuracy: float  # correct / n, abstentions and ties counted wrong
    n: int
    correct: int
    abstained: int
    ties: int
    decided_accuracy: float | None  # correct / (n - abstained - ties)
    pair_accuracy: float | None  # unordered pairs right in BOTH orders / pairs seen in both orders
    order_consistency: float | None  # pairs whose two verdicts pick the same sample / pairs in both orders

    def metrics(self, prefix: str = "critic/heldout") -> dict[str, float]:
        """Flat floats for the trainer's metric log (None fields are left out)."""
        return {f"{prefix}/{k}": float(v) for k, v in self.model_dump().items() if v is not None}


def _as_winner(p: Any) -> Winner | None:
    if p is None:
        return None
    if p in ("A", "B", "tie"):
        return p
    return parse_critic_verdict(str(p))


def critic_accuracy(
    predicted: Sequence[Any], truth: Sequence[Literal["A", "B"]], pair_keys: Sequence[str] | None = None
) -> CriticAccuracy:
    """`predicted`: verdicts ("A", "B", "tie", None) or raw critic texts; `truth`: the correct labels."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} labels")
    if pair_keys is not None and len(pair_keys) != len(truth):
        raise ValueError(f"{len(pair_keys)} pair keys for {len(truth)} labels")
    verdicts = [_as_winner(p) for p in predicted]
    n = len(truth)
    correct = sum(v == t for v, t in zip(verdicts, truth, strict=True))
    abstained = sum(v is None for v in verdicts)
    ties = sum(v == "tie" for v in verdicts)
    decided = n - abstained - ties
    pair_acc = consistency = None
    if pair_keys is not None:
        by_pair: dict[str, list[tuple[Winner | None, str]]] = defaultdict(list)
        for v, t, k in zip(verdicts, truth, pair_keys, strict=True):
            by_pair[k].append((v, t))
        both = [obs for obs in by_pair.values() if len(obs) == 2]
        if both:
            pair_acc = sum(all(v == t for v, t in obs) for obs in both) / len(both)
            # Same underlying sample chosen: in swapped order the correct label flips, so the verdicts agree
            # on the sample exactly when (v == t) has the same truth value in both orders.
            consistency = sum(
                all(v in ("A", "B") for v, _ in obs) and (obs[0][0] == obs[0][1]) == (obs[1][0] == obs[1][1])
                for obs in both
            ) / len(both)
    return CriticAccuracy(
        accuracy=correct / n if n else 0.0,
        n=n,
        correct=correct,
        abstained=abstained,
        ties=ties,
        decided_accuracy=correct / decided if decided else None,
        pair_accuracy=pair_acc,
        order_consistency=consistency,
    )


def evaluate_critic(
    critic: Callable[[list[list[dict[str, Any]]]], list[str | None]], examples: Sequence[CriticExample]
) -> CriticAccuracy:
    """Run a batched critic over held-out examples and score it."""
    texts = critic([ex.messages for ex in examples])
    return critic_accuracy(texts, [ex.target for ex in examples], [ex.pair_key for ex in examples])
