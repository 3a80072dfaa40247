"""The RL loop's `RewardFn` on top of `RewardStack`, with the closed-loop critic data collected on the way.

`agentrl.train.interfaces.RewardFn` is `(trajectories) -> RewardOutput(rewards, success, metrics,
judge_tokens)`. That module imports torch, so `RewardBatch` mirrors its fields here and the trainer wraps it
(`RewardOutput(**vars(batch))`). Per call:
1. group the trajectories by `group_id` (else `task_id`), keeping input order for the outputs;
2. score each group with the stack and write `reward` / `reward_details` back onto the trajectories, so the
   store and `critic_data` see them;
3. from groups whose task type has a verifiable reward, build critic examples (K2 closed-loop refinement):
   a stable hash of the group id sends each group to the training buffer (drained by the trainer with
   `drain_critic_examples`) or to the held-out set (capped);
4. on the first call and every `critic_eval_every` calls after it, score the critic on the held-out set:
   `critic/heldout/*` metrics (the first value is the critic before any refinement).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentrl.rewards.critic_data import CriticExample, build_critic_examples, evaluate_critic, split_by_group
from agentrl.rewards.self_critique import CriticFn
from agentrl.rewards.stack import RewardStack
from agentrl.schemas.trajectory import Trajectory


@dataclass
class RewardBatch:
    rewards: list[float]
    success: list[bool] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    judge_tokens: int = 0


TaskLookup = Callable[[Trajectory], Any] | Mapping[str, Any] | None


class StackRewardFn:
    def __init__(
        self,
        stack: RewardStack,
        *,
        tasks: TaskLookup = None,
        success_threshold: float = 1.0,
        critic_fn: CriticFn | None = None,
        holdout_fraction: float = 0.2,
        max_heldout: int = 256,
        critic_eval_every: int = 5,
        max_pairs_per_group: int | None = None,
        seed: int = 0,
    ) -> None:
        self.stack = stack
        self.tasks = tasks
        self.success_threshold = success_threshold
        self.critic_fn = critic_fn
        self.holdout_fraction = holdout_fraction
        self.max_heldout = max_heldout
        self.critic_eval_every = critic_eval_every
        self.max_pairs_per_group = max_pairs_per_group
        self.seed = seed
        self.critic_train: list[CriticExample] = []
        self.critic_heldout: list[CriticExample] = []
        self.calls = 0
        self._judge_tokens_seen = 0

    def _task(self, t: Trajectory) -> Any:
        if "task" in t.metadata:
            return t.metadata["task"]
        if callable(self.tasks):
            return self.tasks(t)
        if isinstance(self.tasks, Mapping):
            return self.tasks.get(t.task_id)
        return None

    def _verifiable_types(self) -> set[str]:
        return {name for name, spec in self.stack.config.compose.task_types.items() if spec.verifiable}

    def __call__(self, trajectories: Sequence[Trajectory]) -> RewardBatch:
        self.calls += 1
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(trajectories):
            groups.setdefault(t.group_id or t.task_id, []).append(i)
        rewards: list[float] = [0.0] * len(trajectories)
        success: list[bool] = [False] * len(trajectories)
        abstained = 0
        verifiable_groups: list[Trajectory] = []
        for idx in groups.values():
            members = [trajectories[i] for i in idx]
            results = self.stack.score_group(members, self._task(members[0]))
            for i, t, r in zip(idx, members, results, strict=True):
                abstained += r.abstained
                rewards[i] = r.value
                t.reward, t.reward_details = r.value, dict(r.details)
                v = r.details.get("verifiable")
                success[i] = (v if v is not None else r.value) >= self.success_threshold
            if members[0].task_type in self._verifiable_types():
                verifiable_groups.extend(members)
        metrics = dict(self.stack.metrics())
        metrics["rewards/abstained"] = float(abstained)
        new = build_critic_examples(
            verifiable_groups,
            self.stack.rubrics,
            seed=self.seed + self.calls,
            max_pairs_per_group=self.max_pairs_per_group,
            prompt=self.stack.config.self_critique.prompt,
        )
        train, held = split_by_group(new, self.holdout_fraction, seed=self.seed)
        self.critic_train.extend(train)
        self.critic_heldout = (self.critic_heldout + held)[-self.max_heldout :]
        metrics["critic/train_examples_new"] = float(len(train))
        metrics["critic/heldout_examples"] = float(len(self.critic_heldout))
        if (
            self.critic_fn
            and self.critic_heldout
            and self.critic_eval_every
            and (self.calls - 1) % self.critic_eval_every == 0  # from the first call: the untrained critic
        ):
            metrics.update(evaluate_critic(self.critic_fn, self.critic_heldout).metrics())
        tokens = int(metrics.get("judge/prompt_tokens", 0) + metrics.get("judge/completion_tokens", 0))
        delta, self._judge_tokens_seen = tokens - self._judge_tokens_seen, tokens
        return RewardBatch(rewards=rewards, success=success, metrics=metrics, judge_tokens=delta)

    def drain_critic_examples(self) -> list[CriticExample]:
        """Hand the accumulated training examples to the trainer (and forget them here)."""
        out, self.critic_train = self.critic_train, []
        return out
