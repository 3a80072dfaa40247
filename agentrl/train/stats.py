"""Per-step reward statistics: reward and success overall and per task type, response length, tool-call validity.

Success is the reward function's verdict when it gives one, else raw reward (before the budget penalty) >= the
configured threshold. Reward-function metrics (critic accuracy, judge usage, ...) pass through under their names.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentrl.schemas.trajectory import Trajectory
from agentrl.train.interfaces import RewardOutput


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def reward_metrics(
    trajectories: Sequence[Trajectory], out: RewardOutput, rewards: Sequence[float], success_threshold: float
) -> dict[str, float]:
    success = out.success if out.success is not None else [r >= success_threshold for r in out.rewards]
    if not (len(success) == len(rewards) == len(out.rewards) == len(trajectories)):
        raise ValueError("reward function returned a different number of rewards than trajectories")
    metrics: dict[str, float] = {
        "reward/mean": _mean(rewards),
        "reward/raw_mean": _mean(out.rewards),
        "success/mean": _mean([float(s) for s in success]),
        "response/tokens_mean": _mean([float(t.num_generated) for t in trajectories]),
        "reward/judge_tokens": float(out.judge_tokens),
    }
    calls = sum(t.num_tool_calls for t in trajectories)
    if calls:
        metrics["tool_calls/valid_frac"] = 1.0 - sum(t.num_invalid_tool_calls for t in trajectories) / calls
    by_type: dict[str, list[int]] = {}
    for i, t in enumerate(trajectories):
        by_type.setdefault(t.task_type, []).append(i)
    for task_type, idx in sorted(by_type.items()):
        metrics[f"reward/{task_type}"] = _mean([rewards[i] for i in idx])
        metrics[f"success/{task_type}"] = _mean([float(success[i]) for i in idx])
    metrics.update(out.metrics)
    return metrics
