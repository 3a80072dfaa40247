"""Reward composition per task type, with the reward-hacking monitor attached (issue #7 §6).

Config: for each task type, `weights` name the rewards and their weights; `gates` are rewards whose value
multiplies the total (the hack check: a false compliance claim can zero a response whatever else it earned);
`verifiable` and `subjective` name which components feed the monitor. Total = sum(w * v) / sum(w) over the
components that did not abstain, so a judge outage reweights instead of scoring zero; the total abstains only
when every weighted component did. Group-level rewards (self-critique) are computed per group elsewhere and
passed in as `precomputed`. `details["verifiable"]` (mean of verifiable components) is what critic refinement
reads back (`critic_data.default_verifiable_reward`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentrl.errors import ConfigError
from agentrl.rewards.base import Reward, RewardResult, Subject
from agentrl.rewards.monitor import HackingMonitor, MonitorConfig
from agentrl.schemas.trajectory import Trajectory


class TaskRewardSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] = Field(min_length=1)
    gates: list[str] = Field(default_factory=list)
    verifiable: list[str] = Field(default_factory=list)
    subjective: list[str] = Field(default_factory=lambda: ["judge", "self_critique"])

    @model_validator(mode="after")
    def _check(self) -> TaskRewardSpec:
        bad = {k: w for k, w in self.weights.items() if w < 0}
        if bad:
            raise ValueError(f"weights must be >= 0: {bad}")
        if sum(self.weights.values()) <= 0:
            raise ValueError("at least one weight must be > 0")
        return self


class ComposeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_types: dict[str, TaskRewardSpec] = Field(default_factory=dict)
    default: TaskRewardSpec | None = None
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    def spec_for(self, task_type: str) -> TaskRewardSpec:
        spec = self.task_types.get(task_type, self.default)
        if spec is None:
            known = ", ".join(sorted(self.task_types)) or "none"
            raise ConfigError(
                f"no reward weights for task type {task_type!r} (configured: {known}; no default)"
            )
        return spec


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


class RewardComposer:
    """`score(trajectory, task) -> RewardResult` per architecture.md's `Reward` interface."""

    name = "composed"

    def __init__(
        self, config: ComposeConfig, rewards: Mapping[str, Reward], *, monitor: HackingMonitor | None = None
    ) -> None:
        self.config = config
        self.rewards = dict(rewards)
        self.monitor = monitor or HackingMonitor(config.monitor)

    def combine(self, task_type: str, components: Mapping[str, RewardResult]) -> RewardResult:
        spec = self.config.spec_for(task_type)
        used = {n: components[n] for n in spec.weights if n in components and not components[n].abstained}
        parts = {
            n: {
                "value": r.value,
                "weight": spec.weights.get(n, 0.0),
                "abstained": r.abstained,
                "details": r.details,
            }
            for n, r in components.items()
        }
        verifiable = _mean([used[n].value for n in spec.verifiable if n in used])
        subjective = _mean([used[n].value for n in spec.subjective if n in used])
        details: dict[str, Any] = {"task_type": task_type, "components": parts, "verifiable": verifiable}
        if verifiable is not None and subjective is not None:
            event = self.monitor.observe(task_type, verifiable, subjective)
            if event:
                details["hacking_flag"] = event
        total_w = sum(spec.weights[n] for n in used)
        if total_w <= 0:
            return RewardResult(
                value=0.0, details={**details, "abstain_reason": "no component"}, abstained=True
            )
        value = sum(spec.weights[n] * r.value for n, r in used.items()) / total_w
        for g in spec.gates:
            if g in components and not components[g].abstained:
                value *= components[g].value
        return RewardResult(value=value, details=details)

    def score(
        self, subject: Subject, task: Any = None, *, precomputed: Mapping[str, RewardResult] | None = None
    ) -> RewardResult:
        task_type = subject.task_type if isinstance(subject, Trajectory) else "default"
        if isinstance(task, Mapping) and "task_type" in task:
            task_type = str(task["task_type"])
        spec = self.config.spec_for(task_type)
        results: dict[str, RewardResult] = dict(precomputed or {})
        wanted = [n for n in [*spec.weights, *spec.gates] if n not in results]
        # Gates last: the hack check reads the other verifiers' results as evidence (e.g. unit tests).
        for name in sorted(wanted, key=lambda n: n in spec.gates):
            reward = self.rewards.get(name)
            if reward is None:
                continue  # group-level or optional component not given for this sample
            if name in spec.gates and hasattr(reward, "findings"):
                results[name] = reward.score(subject, task, evidence=results)  # type: ignore[call-arg]
            else:
                results[name] = reward.score(subject, task)
        return self.combine(task_type, results)
