"""Partial rollouts (Kimi k1.5 §2.6.2, used by K2): a per-iteration token budget, unfinished trajectories resumed.

Each iteration every trajectory may generate at most `segment_tokens` tokens. Long ones stop with status
`partial` and wait in this buffer (optionally persisted as JSONL, so a restarted trainer resumes them); the next
iteration continues them from their exact tokens under the then-current policy, before or alongside new episodes.
A finished trajectory lists every policy version that produced its tokens (`policy_versions`, plus
`metadata.loop.version_spans` per token span), so the trainer can weight or drop stale parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentrl.engine.base import SamplingSpec
from agentrl.rollout.episode import EpisodeSpec
from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus


class PartialRolloutBuffer:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.pending: list[tuple[Trajectory, EpisodeSpec]] = []
        self._loaded: list[Trajectory] = []
        if self.path and self.path.is_file():
            self._loaded = [
                Trajectory.model_validate_json(line) for line in self.path.read_text().splitlines() if line
            ]

    def __len__(self) -> int:
        return len(self.pending) + len(self._loaded)

    def run_iteration(
        self,
        loop: Any,  # AgentLoop
        new: list[EpisodeSpec],
        policy_version: int,
        segment_tokens: int,
        spec_for_loaded: Callable[[Trajectory], EpisodeSpec] | None = None,
    ) -> list[Trajectory]:
        """Resume the buffered partial trajectories, start `new`, return the ones that finished this iteration."""
        specs = [
            replace(spec, resume_from=traj, policy_version=policy_version, segment_tokens=segment_tokens)
            for traj, spec in self.pending
        ]
        if self._loaded:
            if spec_for_loaded is None:
                raise ValueError(
                    f"{len(self._loaded)} partial trajectories loaded from {self.path} need spec_for_loaded"
                )
            specs += [
                replace(
                    spec_for_loaded(t),
                    resume_from=t,
                    policy_version=policy_version,
                    segment_tokens=segment_tokens,
                )
                for t in self._loaded
            ]
        specs += [replace(s, policy_version=policy_version, segment_tokens=segment_tokens) for s in new]
        trajectories = loop.run(specs)
        self.pending, self._loaded = [], []
        finished = []
        for traj, spec in zip(trajectories, specs, strict=True):
            if traj.status == TrajectoryStatus.partial:
                self.pending.append((traj, replace(spec, resume_from=None)))
            else:
                finished.append(traj)
        self._save()
        return finished

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text("".join(t.model_dump_json() + "\n" for t, _ in self.pending))
            tmp.replace(self.path)
        except OSError as exc:  # e.g. a full disk: name the file; the previous buffer file stays intact
            tmp.unlink(missing_ok=True)
            raise OSError(
                exc.errno, f"could not save partial rollouts to {self.path}: {exc.strerror}"
            ) from exc


def default_sampling(traj: Trajectory) -> SamplingSpec:
    """The sampling a loaded trajectory was started with (temperature and per-sample budget)."""
    s = traj.sampling
    return SamplingSpec(
        temperature=float(s.get("temperature", 1.0)), max_tokens=int(s.get("max_tokens", 1024))
    )
