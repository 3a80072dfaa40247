"""Self-Critique Rubric Reward for a group of K samples of one prompt (K2 §3.2.2).

All K(K-1) ordered pairs go to the critic in ONE batched call, so the owner of the inference engine can run
them through the same vLLM engine as the rollouts (issue #7: "batch the critic calls through the same vLLM
engine"); `CriticFn` is that seam: a list of OpenAI message lists in, one completion text per list out.
`chat_client_critic` adapts an OpenAI-compatible server (e.g. `vllm serve` of the policy checkpoint).
Verdicts are parsed with `parse_critic_verdict`; unparseable ones are abstentions and are dropped from the
pairwise maths. If every comparison of the group abstains, every sample's result is an abstention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentrl.rewards.base import RewardResult, Subject, task_field
from agentrl.rewards.critic_prompt import CriticPromptConfig, build_critic_messages, parse_critic_verdict
from agentrl.rewards.openai_client import ChatClient, ChatError
from agentrl.rewards.pairwise import (
    Comparison,
    PairwiseConfig,
    both_orders_pairs,
    pairwise_rewards,
    position_bias,
)
from agentrl.rewards.rubrics import RubricSet
from agentrl.schemas.trajectory import Trajectory

CriticFn = Callable[[list[list[dict[str, Any]]]], list[str | None]]


class SelfCritiqueConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairwise: PairwiseConfig = Field(default_factory=PairwiseConfig)
    prompt: CriticPromptConfig = Field(default_factory=CriticPromptConfig)
    """The critic prompt; the closed-loop refinement examples are rendered with the same settings."""


# Guided decoding for the verdict: the output is then always one of the two tokens (in a JSON string, which
# parse_critic_verdict reads). The critic loses its free-text reasoning, but a weak critic cannot abstain.
GUIDED_VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["[[A]]", "[[B]]"]}},
    "required": ["verdict"],
    "additionalProperties": False,
}


def chat_client_critic(client: ChatClient, *, max_concurrency: int = 8, guided: bool = False) -> CriticFn:
    """A `CriticFn` over an OpenAI-compatible server; a failed call becomes None (an abstention)."""
    schema = GUIDED_VERDICT_SCHEMA if guided else None

    def one(messages: list[dict[str, Any]]) -> str | None:
        try:
            return client.chat(messages, json_schema=schema).text
        except ChatError:
            return None

    def critic(batch: list[list[dict[str, Any]]]) -> list[str | None]:
        with ThreadPoolExecutor(max_workers=max_concurrency) as pool:
            return list(pool.map(one, batch))

    return critic


class SelfCritiqueReward:
    name = "self_critique"

    def __init__(
        self, critic: CriticFn, rubrics: RubricSet, config: SelfCritiqueConfig | None = None
    ) -> None:
        self.critic = critic
        self.rubrics = rubrics
        self.config = config or SelfCritiqueConfig()

    def score_group(self, samples: Sequence[Subject], task: Any = None) -> list[RewardResult]:
        k = len(samples)
        if k < 2:
            return [RewardResult.abstain("need at least two samples to compare")] * k
        tid = task_field(task, "id", required=False) if task is not None else None
        domain = task_field(task, "domain", required=False) if task is not None else None
        rubrics = self.rubrics.for_task(tid, domain)
        pairs = both_orders_pairs(k)
        # Trajectories carry their own prompt messages (the rendering critic_data trains on); plain string
        # samples need the task's prompt text.
        prompt = task_field(task, "prompt", required=False) if task is not None else None

        def prompt_of(x: Subject) -> Subject:
            return x if isinstance(x, Trajectory) or not prompt else prompt

        batch = [
            build_critic_messages(prompt_of(samples[i]), samples[i], samples[j], rubrics, self.config.prompt)
            for i, j in pairs
        ]
        texts = self.critic(batch)
        if len(texts) != len(batch):
            raise RuntimeError(f"critic returned {len(texts)} completions for {len(batch)} prompts")
        comps = [
            Comparison(i, j, parse_critic_verdict(t) if t is not None else None)
            for (i, j), t in zip(pairs, texts, strict=True)
        ]
        decided = sum(c.winner is not None for c in comps)
        if decided == 0:
            return [RewardResult.abstain("every critic verdict was unparseable", comparisons=len(comps))] * k
        rewards = pairwise_rewards(k, comps, self.config.pairwise)
        common = {
            "method": self.config.pairwise.method,
            "comparisons": len(comps),
            "abstained_comparisons": len(comps) - decided,
            "position_a_rate": position_bias(comps),
            "rubric_ids": [r.id for r in rubrics],
        }
        out = []
        for i, r in enumerate(rewards):
            mine = [c for c in comps if i in (c.a, c.b) and c.winner is not None]
            wins = sum((c.winner == "A") == (c.a == i) for c in mine if c.winner != "tie")
            if not mine:  # every comparison involving this sample was unparseable: no evidence about it
                out.append(RewardResult.abstain("no decided comparison for this sample", **common))
                continue
            out.append(RewardResult(value=r, details={**common, "wins": wins, "games": len(mine)}))
        return out
