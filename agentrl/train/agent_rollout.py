"""`AgentLoopRollout`: the RL loop's `RolloutSource` over the multi-turn agent loop (agentrl/rollout).

For each task of a request it starts K episodes in one `AgentLoop.run` call (one engine batch per turn), with the
request's temperature and per-task-type budget, a shared `group_id` per task, and seeds derived from the request
seed. The agent loop's `max_tokens` caps *generated* tokens; the trainer's budget covers the whole sample (prompt
and tool results included, train/budget.py), so the loop is given the full budget as an upper bound and the
trainer cuts the sample at the budget afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from agentrl.engine.base import SamplingSpec
from agentrl.schemas.trajectory import Trajectory
from agentrl.train.interfaces import RolloutRequest


class RLTask(BaseModel):
    id: str
    task_type: str = "tool_use"
    env: str = Field("", description="Environment name, passed to `env_for` to get a client.")
    spec: dict[str, Any] | str | None = Field(None, description="What the environment's reset() receives.")


class AgentLoopRollout:
    def __init__(self, loop: Any, env_for: Callable[[RLTask], Any], top_p: float = 1.0) -> None:
        self.loop = loop  # agentrl.rollout.agent_loop.AgentLoop
        self.env_for = env_for
        self.top_p = top_p

    def __call__(self, request: RolloutRequest) -> list[Trajectory]:
        from agentrl.rollout.episode import EpisodeSpec

        specs = []
        for t_idx, task in enumerate(request.tasks):
            if not isinstance(task, RLTask):
                raise TypeError(f"AgentLoopRollout needs RLTask tasks, got {type(task).__name__}")
            for k in range(request.samples_per_task):
                seed = (request.seed * 7919 + t_idx * request.samples_per_task + k) % 2**31
                specs.append(
                    EpisodeSpec(
                        task=task.spec,
                        env=self.env_for(task),
                        sampling=SamplingSpec(
                            temperature=request.temperature,
                            max_tokens=request.budget_for(task.task_type),
                            top_p=self.top_p,
                            seed=seed,
                        ),
                        policy_version=request.policy_version,
                        task_id=task.id,
                        group_id=f"{task.id}@{request.step}",
                        task_type=task.task_type,
                        env_name=task.env,
                        env_seed=seed,
                        trajectory_id=f"{task.id}@{request.step}#{k}",
                    )
                )
        return self.loop.run(specs)

    def prompt_lengths(self, tasks: Sequence[Any]) -> dict[str, int]:
        """Unknown before the environment's reset(); budgets are then checked per sample (SampleBudget.truncate)."""
        return {}
