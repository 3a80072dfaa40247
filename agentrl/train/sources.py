"""Data order, and a fixed-pool rollout source for train-only runs (debug mode, tests, trainer benchmarks).

`TaskOrder` walks the task list in per-epoch seeded permutations; its (epoch, cursor) is checkpointed, so a
resumed run sees the same tasks in the same order.

`FixedPoolRollout` replays fixed token sequences instead of sampling from the policy: each task carries a prompt
and a pool of candidate responses with their rewards, and each request draws K of them with the torch RNG (so a
resumed run only reproduces the draws if the RNG state was restored). It exercises every trainer path without an
inference engine; the vLLM agent loop is the real `RolloutSource` (agentrl/rollout).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, Field

from agentrl.errors import ConfigError
from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus
from agentrl.train.interfaces import RewardOutput, RolloutRequest


class TaskOrder:
    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        if num_tasks <= 0:
            raise ConfigError("the RL task set is empty")
        self.num_tasks, self.seed = num_tasks, seed
        self.epoch, self.cursor = 0, 0

    def _perm(self) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.num_tasks, generator=gen).tolist()

    def next(self, n: int) -> list[int]:
        out: list[int] = []
        perm = self._perm()
        while len(out) < n:
            if self.cursor >= self.num_tasks:
                self.epoch, self.cursor = self.epoch + 1, 0
                perm = self._perm()
            out.append(perm[self.cursor])
            self.cursor += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


class PoolResponse(BaseModel):
    token_ids: list[int] = Field(min_length=1)
    reward: float
    logprobs: list[float] | None = None  # engine logprobs of the response tokens, if known


class PoolTask(BaseModel):
    id: str
    task_type: str = "tool_use"
    prompt: list[int] = Field(min_length=1)
    responses: list[PoolResponse] = Field(min_length=1)


class FixedPoolRollout:
    def __call__(self, request: RolloutRequest) -> list[Trajectory]:
        out = []
        for task in request.tasks:
            if not isinstance(task, PoolTask):
                raise TypeError(f"FixedPoolRollout needs PoolTask tasks, got {type(task).__name__}")
            picks = torch.randint(len(task.responses), (request.samples_per_task,)).tolist()
            for k, pick in enumerate(picks):
                resp = task.responses[pick]
                budget = request.budget_for(task.task_type)
                room = budget - len(task.prompt)
                tokens = resp.token_ids[:room]  # the engine would stop at max_tokens = budget - prompt_len
                lps = resp.logprobs[:room] if resp.logprobs is not None else [None] * len(tokens)
                out.append(
                    Trajectory(
                        id=f"{task.id}-s{request.step}-k{k}",
                        task_id=task.id,
                        task_type=task.task_type,
                        group_id=f"{task.id}-s{request.step}",
                        token_ids=task.prompt + tokens,
                        loss_mask=[0] * len(task.prompt) + [1] * len(tokens),
                        logprobs=[None] * len(task.prompt) + list(lps),
                        prompt_len=len(task.prompt),
                        status=TrajectoryStatus.truncated
                        if len(tokens) < len(resp.token_ids)
                        else TrajectoryStatus.ok,
                        reward=resp.reward,
                        policy_versions=[request.policy_version],
                        sampling={
                            "temperature": request.temperature,
                            "max_tokens": room,
                            "seed": request.seed,
                        },
                    )
                )
        return out

    def prompt_lengths(self, tasks: Sequence[Any]) -> dict[str, int]:
        lens: dict[str, int] = {}
        for t in tasks:
            lens[t.task_type] = max(lens.get(t.task_type, 0), len(t.prompt))
        return lens


class PrecomputedReward:
    """Reads `Trajectory.reward` set by the rollout (environment reward, or a fixed pool's reward)."""

    def __call__(self, trajectories: Sequence[Trajectory]) -> RewardOutput:
        missing = [t.id for t in trajectories if t.reward is None]
        if missing:
            raise ValueError(f"trajectories without a reward: {missing[:3]}")
        return RewardOutput(rewards=[float(t.reward) for t in trajectories])  # type: ignore[arg-type]
