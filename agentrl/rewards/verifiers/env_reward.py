"""The environment's own verifiable reward (`Trajectory.env_reward`), as a reward component.

An environment server that verifies its episodes itself (tool_world's final-state + required-output check, the
code env's tests, reasoning-gym's scorers) reports the reward with the episode; this component passes it into
the composition so it can be weighted against the judge and the self-critique reward like any verifier. A
trajectory without one (the env failed before scoring) abstains rather than scoring 0.
"""

from __future__ import annotations

from typing import Any

from agentrl.rewards.base import RewardResult, Subject
from agentrl.schemas.trajectory import Trajectory


class EnvRewardVerifier:
    name = "env"

    def score(self, subject: Subject, task: Any) -> RewardResult:
        if not isinstance(subject, Trajectory) or subject.env_reward is None:
            return RewardResult.abstain("the environment reported no reward for this episode")
        return RewardResult(value=float(subject.env_reward), details={"source": "environment"})
