"""The one Trajectory schema, shared by the rollout workers, the store, the trainer and the report.

Token-in/token-out: `token_ids` is the exact sequence the engine saw and produced; the trainer scores exactly
these tokens. `loss_mask[i] == 1` marks tokens the policy generated (assistant text and tool calls); prompt,
tool-result and user tokens are 0. `logprobs[i]` is the engine's sampling logprob for generated tokens, None
elsewhere.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field, model_validator


class TrajectoryStatus(str, Enum):
    ok = "ok"  # episode ended (final answer or env done)
    truncated = "truncated"  # hit the per-sample token budget
    partial = "partial"  # unfinished; resumed in the next iteration (partial rollouts)
    failed = "failed"  # environment or engine failure; `failure_reason` says why


class Trajectory(BaseModel):
    id: str = Field(description="Unique trajectory id.")
    job_id: str | None = Field(default=None, description="Rollout-API job that produced it, if any.")
    task_id: str
    task_type: str = Field(default="tool_use", description="Selects reward weights and token budgets.")
    group_id: str | None = Field(default=None, description="The K samples of one prompt share a group id.")
    env: str = Field(default="", description="Environment name or endpoint.")
    token_ids: list[int] = Field(default_factory=list)
    loss_mask: list[int] = Field(default_factory=list)
    logprobs: list[float | None] = Field(default_factory=list)
    prompt_len: int = Field(default=0, ge=0, description="Tokens before the first generated token.")
    messages: list[dict[str, Any]] = Field(
        default_factory=list, description="OpenAI-format view, for display."
    )
    num_turns: int = Field(default=0, ge=0)
    num_tool_calls: int = Field(default=0, ge=0)
    num_invalid_tool_calls: int = Field(default=0, ge=0)
    status: TrajectoryStatus = TrajectoryStatus.ok
    failure_reason: str | None = None
    reward: float | None = None
    reward_details: dict[str, Any] = Field(default_factory=dict)
    env_reward: float | None = Field(default=None, description="Reward reported by the environment itself.")
    policy_versions: list[int] = Field(default_factory=list, description="Policy versions the tokens span.")
    sampling: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens, ... used.")
    timing: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _aligned(self) -> Trajectory:
        n = len(self.token_ids)
        if len(self.loss_mask) != n or len(self.logprobs) != n:
            raise ValueError(
                f"token_ids ({n}), loss_mask ({len(self.loss_mask)}) and logprobs ({len(self.logprobs)}) "
                "must have the same length"
            )
        if any(m not in (0, 1) for m in self.loss_mask):
            raise ValueError("loss_mask entries must be 0 or 1")
        if self.prompt_len > n:
            raise ValueError(f"prompt_len {self.prompt_len} exceeds the sequence length {n}")
        return self

    @property
    def num_generated(self) -> int:
        return sum(self.loss_mask)
