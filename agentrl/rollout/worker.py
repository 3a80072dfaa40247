"""Rollout worker: lease jobs from the rollout API, run the agent loop, heartbeat, submit.

`agentrl worker --api URL` runs this standalone on any machine; `agentrl.rollout.ray_workers` wraps the same
class in Ray actors. Exactly-once comes from the API (issue 6): submission is idempotent by job id, and a job
whose worker died (SIGKILL) is re-leased when its lease expires without heartbeats, so it yields one trajectory.

Jobs (`services.rollout_api.schemas.JobSpec`):
- `task`: `{"task_id": ID}` resets by id, `{"task_spec": {...}}` (or any other dict) by spec; `{"seed": N}` optional;
- `env.endpoint`: an `http(s)://` environment server, or `local:module:Factory` for an in-process env;
- `sampling`: temperature and per-sample token budget from the trainer's schedules;
- `metadata.segment_tokens` (partial rollouts: this iteration's budget) and `metadata.resume_from` (a partial
  Trajectory to continue).

Failure semantics: an environment failure -> the trajectory is submitted with status `failed` and the reason;
the engine failing -> every leased job is handed back (`fail(retryable=True)`) and `EngineError` propagates, so the
worker exits non-zero with a message that says the engine stopped answering.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentrl.engine.base import InferenceEngine, SamplingSpec
from agentrl.rollout.agent_loop import AgentLoop, EngineError, LoopConfig
from agentrl.rollout.envs import EnvLike, open_env
from agentrl.rollout.episode import EpisodeSpec
from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus

log = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    max_jobs: int = 16  # leased per round and run as one concurrent batch
    lease_s: float | None = None  # None: the server's default
    poll_s: float = 1.0  # sleep when the queue is empty
    env_token: str | None = None
    env_timeout_s: float = 60.0
    loop: LoopConfig = field(default_factory=LoopConfig)


@dataclass
class WorkerStats:
    rounds: int = 0
    submitted: int = 0
    failed_env: int = 0
    lost_leases: int = 0
    rejected: int = 0


def episode_from_job(leased: Any, env: EnvLike, policy_version: int) -> EpisodeSpec:
    job = leased.job
    task: Any = dict(job.task)
    seed = task.pop("seed", None)
    if set(task) == {"task_id"}:
        task = task["task_id"]
    elif "task_spec" in task:
        task = task["task_spec"]
    s = job.sampling
    resume = job.metadata.get("resume_from")
    return EpisodeSpec(
        task=task or None,
        env=env,
        sampling=SamplingSpec(temperature=s.temperature, max_tokens=s.max_tokens, top_p=s.top_p, seed=s.seed),
        policy_version=policy_version,
        task_id=task if isinstance(task, str) else str(job.metadata.get("task_id", "")),
        job_id=job.id,
        group_id=job.group_id,
        task_type=job.task_type,
        env_name=job.env.name or job.env.endpoint,
        env_seed=seed,
        segment_tokens=job.metadata.get("segment_tokens"),
        resume_from=Trajectory.model_validate(resume) if resume else None,
        trajectory_id=job.id,
    )


class RolloutWorker:
    def __init__(
        self,
        client: Any,  # services.rollout_api.client.RolloutClient
        engine: InferenceEngine,
        tokenizer: Any,
        config: WorkerConfig | None = None,
        env_opener: Callable[[str], EnvLike] | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.config = config or WorkerConfig()
        self.loop = AgentLoop(engine, tokenizer, self.config.loop)
        self.stats = WorkerStats()
        self._envs: dict[str, EnvLike] = {}
        self._env_opener = env_opener or (
            lambda ep: open_env(ep, token=self.config.env_token, timeout_s=self.config.env_timeout_s)
        )

    def _env(self, endpoint: str) -> EnvLike:
        if endpoint not in self._envs:
            self._envs[endpoint] = self._env_opener(endpoint)
        return self._envs[endpoint]

    def run_once(self) -> int:
        """Lease up to `max_jobs`, roll them out concurrently, submit. Returns the number of jobs leased."""
        leased = self.client.lease(max_jobs=self.config.max_jobs, lease_s=self.config.lease_s)
        if not leased:
            return 0
        self.stats.rounds += 1
        version = getattr(self.engine, "policy_version", None)
        specs, keepers = [], []
        with contextlib.ExitStack() as stack:
            for lj in leased:
                keepers.append(stack.enter_context(self.client.keep_alive(lj)))
                try:
                    env = self._env(lj.job.env.endpoint)
                except Exception as exc:  # noqa: BLE001 - a bad endpoint fails that job only
                    env = _BrokenEnv(f"cannot open environment {lj.job.env.endpoint!r}: {exc}")
                specs.append(episode_from_job(lj, env, lj.job.policy_version if version is None else version))
            try:
                trajectories = self.loop.run(specs)
            except EngineError as exc:
                for lj in leased:
                    with contextlib.suppress(Exception):
                        self.client.fail(lj.job.id, lj.lease_id, f"engine failure: {exc}", retryable=True)
                raise
        for lj, keeper, traj in zip(leased, keepers, trajectories, strict=True):
            self._submit(lj, keeper, traj)
        return len(leased)

    def _submit(self, lj: Any, keeper: Any, traj: Trajectory) -> None:
        from services.rollout_api.client import LeaseLost, SubmissionRejected

        if keeper.lost.is_set():
            self.stats.lost_leases += 1
            log.warning("lease on job %s was lost (%s); dropping its trajectory", lj.job.id, keeper.error)
            return
        if traj.status == TrajectoryStatus.failed:
            self.stats.failed_env += 1
        try:
            self.client.submit(lj.job.id, lj.lease_id, traj)
            self.stats.submitted += 1
        except (SubmissionRejected, LeaseLost) as exc:
            self.stats.rejected += 1
            log.warning("submission for job %s rejected: %s", lj.job.id, exc)

    def run(
        self,
        stop: threading.Event | None = None,
        max_rounds: int | None = None,
        idle_exit_s: float | None = None,
    ) -> WorkerStats:
        """Loop until `stop` is set, `max_rounds` rounds ran, or the queue stayed empty for `idle_exit_s`."""
        stop = stop or threading.Event()
        idle_since = time.monotonic()
        while not stop.is_set():
            if max_rounds is not None and self.stats.rounds >= max_rounds:
                break
            if self.run_once():
                idle_since = time.monotonic()
                continue
            if idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                break
            stop.wait(self.config.poll_s)
        return self.stats


class _BrokenEnv:
    """Stands in for an environment that could not be opened, so the job fails with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def reset(self, task: Any = None, seed: int | None = None) -> Any:
        raise ConnectionError(self.reason)

    def step(self, session_id: str, action: Any) -> Any:
        raise ConnectionError(self.reason)

    def close_session(self, session_id: str) -> None:
        return None
