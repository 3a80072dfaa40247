"""Budget control: a per-sample token budget per task type (K2 §3.2.3) and run-level budgets.

Per sample (K2: "a per-sample maximum token budget ... determined based on the type of task"; responses over it
are truncated and penalised; values not specified, k2.md §4.2). Here a budget counts every token of the
trajectory, prompt included, because in multi-turn agentic episodes tool results consume the same context as the
policy's own text; the rollout is asked for at most `budget - prompt_len` new tokens. A trajectory longer than its
budget is cut at the budget, marked `truncated`, and so is one the rollout already stopped at the limit
(`status == truncated`); every truncated sample gets `penalty` *added* to its reward (so it is usually negative).

Run level: total tokens generated+scored, wall-clock seconds and judge tokens. Usage is part of the checkpointed
state, so a resumed run keeps counting from where it stopped. When one is used up the loop stops after the
current step, writes a checkpoint and reports which budget ran out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentrl.errors import ConfigError
from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus


class SampleBudgetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    default: int = Field(512, gt=0)
    """Token budget (prompt + all turns) for task types not listed in `per_task`."""
    per_task: dict[str, int] = Field(default_factory=dict)
    """Token budget per task type."""
    penalty: float = -1.0
    """Added to the reward of every truncated sample."""


class RunBudgetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_tokens: int | None = Field(None, gt=0)
    """Stop once this many trajectory tokens have been trained on; None = unlimited."""
    max_wall_s: float | None = Field(None, gt=0)
    """Stop once the run (summed over resumes) has used this many seconds; None = unlimited."""
    max_judge_tokens: int | None = Field(None, gt=0)
    """Stop once reward judges have used this many tokens; None = unlimited."""


class SampleBudget:
    def __init__(self, config: SampleBudgetConfig) -> None:
        bad = {k: v for k, v in config.per_task.items() if v <= 0}
        if bad:
            raise ConfigError(f"budget.per_task entries must be > 0, got {bad}")
        self.config = config

    def budget_for(self, task_type: str) -> int:
        return self.config.per_task.get(task_type, self.config.default)

    def check_prompts(self, prompt_lens: dict[str, int]) -> None:
        """Fail before any work when a task type's longest prompt leaves no room under its budget."""
        for task_type, prompt_len in sorted(prompt_lens.items()):
            budget = self.budget_for(task_type)
            if budget <= prompt_len:
                raise ConfigError(
                    f"token budget {budget} for task type {task_type!r} is not above its longest prompt "
                    f"({prompt_len} tokens); raise budget.per_task.{task_type} or budget.default"
                )

    def truncate(self, traj: Trajectory) -> Trajectory:
        """Cut `traj` to its task type's budget (a copy); over-budget or already-truncated samples are `truncated`."""
        budget = self.budget_for(traj.task_type)
        if traj.prompt_len >= budget:
            raise ConfigError(
                f"trajectory {traj.id}: prompt of {traj.prompt_len} tokens does not fit the {traj.task_type!r} "
                f"budget of {budget}"
            )
        if len(traj.token_ids) <= budget:
            return traj
        return traj.model_copy(
            update={
                "token_ids": traj.token_ids[:budget],
                "loss_mask": traj.loss_mask[:budget],
                "logprobs": traj.logprobs[:budget],
                "status": TrajectoryStatus.truncated,
                "metadata": {**traj.metadata, "truncated_from": len(traj.token_ids)},
            }
        )

    def apply_penalty(self, trajectories: Sequence[Trajectory], rewards: Sequence[float]) -> list[float]:
        return [
            r + self.config.penalty if t.status == TrajectoryStatus.truncated else r
            for t, r in zip(trajectories, rewards, strict=True)
        ]

    def metrics(self, trajectories: Sequence[Trajectory]) -> dict[str, float]:
        """`budget/truncation_rate`, `budget/use` (mean tokens / budget), and both per task type."""
        out: dict[str, float] = {}
        by_type: dict[str, list[Trajectory]] = {}
        for t in trajectories:
            by_type.setdefault(t.task_type, []).append(t)
        for key, group in [("", list(trajectories))] + [(f"/{k}", v) for k, v in sorted(by_type.items())]:
            if not group:
                continue
            truncated = sum(t.status == TrajectoryStatus.truncated for t in group)
            use = sum(len(t.token_ids) / self.budget_for(t.task_type) for t in group)
            out[f"budget/truncation_rate{key}"] = truncated / len(group)
            out[f"budget/use{key}"] = use / len(group)
        return out


class RunBudget:
    """Run-level usage counters against the configured limits; `state_dict()` goes into every checkpoint."""

    def __init__(self, config: RunBudgetConfig, clock: Any = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.tokens = 0
        self.judge_tokens = 0
        self.wall_s_before = 0.0  # seconds used by earlier (resumed-from) processes
        self._t0 = clock()

    @property
    def wall_s(self) -> float:
        return self.wall_s_before + (self.clock() - self._t0)

    def charge(self, tokens: int = 0, judge_tokens: int = 0) -> None:
        self.tokens += int(tokens)
        self.judge_tokens += int(judge_tokens)

    def exhausted(self) -> str | None:
        """The reason the run must stop, or None."""
        c = self.config
        if c.max_tokens is not None and self.tokens >= c.max_tokens:
            return f"token budget used up: {self.tokens} >= run_budget.max_tokens={c.max_tokens}"
        if c.max_judge_tokens is not None and self.judge_tokens >= c.max_judge_tokens:
            return f"judge token budget used up: {self.judge_tokens} >= run_budget.max_judge_tokens={c.max_judge_tokens}"
        if c.max_wall_s is not None and self.wall_s >= c.max_wall_s:
            return f"wall-clock budget used up: {self.wall_s:.1f}s >= run_budget.max_wall_s={c.max_wall_s}"
        return None

    def metrics(self) -> dict[str, float]:
        return {
            "run_budget/tokens": float(self.tokens),
            "run_budget/judge_tokens": float(self.judge_tokens),
            "run_budget/wall_s": self.wall_s,
        }

    def state_dict(self) -> dict[str, float]:
        return {"tokens": self.tokens, "judge_tokens": self.judge_tokens, "wall_s": self.wall_s}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.tokens = int(state["tokens"])
        self.judge_tokens = int(state["judge_tokens"])
        self.wall_s_before = float(state["wall_s"])
        self._t0 = self.clock()
