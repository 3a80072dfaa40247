"""The collaborators the RL loop is built from. Each is a small protocol, injected, never chosen by an if-chain.

- `RolloutSource(request) -> trajectories`: samples K responses per task with the current policy (vLLM agent loop,
  a saved-rollout replay, a fixed pool in tests). It reads the temperature and per-sample token budgets from the
  request and records the temperature it used in `Trajectory.sampling["temperature"]`.
- `RewardFn(trajectories) -> RewardOutput`: scalar rewards (verifiers, judge, self-critique composition).
- `WeightSync(model, version)`: pushes the updated weights to the inference side.
- `Evaluator(model, step) -> metrics`: held-out evaluation.
- `OptimizerFactory(model) -> torch.optim.Optimizer`: MuonClip or AdamW; if it has `last_stats` (MuonClip),
  those are logged (QK-Clip, expert load).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from agentrl.schemas.trajectory import Trajectory


@dataclass(frozen=True)
class RolloutRequest:
    step: int
    policy_version: int
    tasks: list[Any]
    samples_per_task: int
    temperature: float
    seed: int
    budgets: dict[str, int] = field(default_factory=dict)
    default_budget: int = 512

    def budget_for(self, task_type: str) -> int:
        """Max tokens (prompt included) of one sample of this task type."""
        return self.budgets.get(task_type, self.default_budget)


class RolloutSource(Protocol):
    def __call__(self, request: RolloutRequest) -> list[Trajectory]: ...

    def prompt_lengths(self, tasks: Sequence[Any]) -> dict[str, int]:
        """Longest prompt in tokens per task type (checked against the budgets before the run starts)."""
        ...


@dataclass
class RewardOutput:
    rewards: list[float]
    success: list[bool] | None = None  # None: success = reward >= the loop's success_threshold
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. critic accuracy
    judge_tokens: int = 0


class RewardFn(Protocol):
    def __call__(self, trajectories: Sequence[Trajectory]) -> RewardOutput: ...


class WeightSync(Protocol):
    def __call__(self, model: torch.nn.Module, version: int) -> None: ...


class Evaluator(Protocol):
    def __call__(self, model: torch.nn.Module, step: int) -> dict[str, float]: ...


OptimizerFactory = Callable[[torch.nn.Module], torch.optim.Optimizer]
