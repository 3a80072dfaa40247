"""The RL loop (issue #8): rollout → rewards → loss → optimizer step (QK-Clip inside MuonClip) → weight sync → eval.

Every algorithmic choice is an injected object: the `RolloutSource`, the `RewardFn`, the `Objective`, the optimizer
factory, the `WeightSync` and the `Evaluator` (train/interfaces.py). `RLTrainer.run` is the whole loop; one
iteration is `_iteration`. Temperature decay feeds each rollout request; budgets truncate and penalise samples and
stop the run; every `checkpoint.every` steps the complete state is saved atomically (train/checkpoint.py), and a
new `RLTrainer` on the same run_dir resumes from it with the same data order and RNG state.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agentrl.config.loader import write_run_metadata
from agentrl.errors import AgentRLError
from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus
from agentrl.train.aux_loss import AuxLoss
from agentrl.train.budget import RunBudget, SampleBudget
from agentrl.train.checkpoint import load_latest, rng_state, save_train_state, set_rng_state
from agentrl.train.interfaces import (
    Evaluator,
    OptimizerFactory,
    RewardFn,
    RolloutRequest,
    RolloutSource,
    WeightSync,
)
from agentrl.train.learner import PolicyLearner
from agentrl.train.losses import Objective
from agentrl.train.metrics import MetricsLogger, Progress
from agentrl.train.ptx import PTXSampler, SFTExample
from agentrl.train.rl_config import RLConfig
from agentrl.train.sources import TaskOrder
from agentrl.train.stats import reward_metrics

_TRAINABLE = (TrajectoryStatus.ok, TrajectoryStatus.truncated)


@dataclass
class RunResult:
    steps: int
    stop_reason: str
    last_metrics: dict[str, Any]
    run_dir: Path


class RLTrainer:
    def __init__(
        self,
        config: RLConfig,
        model: torch.nn.Module,
        tasks: Sequence[Any],
        rollout: RolloutSource,
        reward_fn: RewardFn,
        objective: Objective,
        optimizer_factory: OptimizerFactory,
        pad_id: int,
        weight_sync: WeightSync | None = None,
        evaluator: Evaluator | None = None,
        ptx_examples: Sequence[SFTExample] = (),
        resume: bool = True,
        aux_losses: Sequence[AuxLoss] = (),
    ) -> None:
        # Everything that can reject the config runs before any model work.
        self.budget = SampleBudget(config.budget)
        if hasattr(rollout, "prompt_lengths"):
            self.budget.check_prompts(rollout.prompt_lengths(tasks))
        self.config, self.model, self.tasks = config, model, list(tasks)
        self.rollout, self.reward_fn, self.weight_sync, self.evaluator = (
            rollout,
            reward_fn,
            weight_sync,
            evaluator,
        )
        self.run_dir = Path(config.run_dir)
        self.order = TaskOrder(len(self.tasks), seed=config.seed)
        self.temperature = config.temperature.build()
        ptx = (
            PTXSampler(ptx_examples, config.ptx.batch_size, pad_id, seed=config.seed)
            if config.ptx.beta > 0
            else None
        )
        reference = None
        if getattr(objective, "needs_reference", False):
            reference = copy.deepcopy(model).requires_grad_(False)
        self.learner = PolicyLearner(
            model,
            optimizer_factory(model),
            objective,
            config,
            pad_id,
            config.lr_schedule.build(),
            ptx,
            reference,
            aux_losses=aux_losses,
        )
        self.run_budget = RunBudget(config.run_budget)
        self.step, self.version = 0, 0
        state = load_latest(self.run_dir / "checkpoints") if resume else None
        if state is not None:
            self._load(state)
        else:
            torch.manual_seed(config.seed)
        write_run_metadata(self.run_dir, config)
        self.logger = MetricsLogger(
            self.run_dir, config.metrics.tensorboard, resume_step=self.step if state else None
        )
        if weight_sync is not None:
            # The engine must start from these weights: after a kill it still holds whatever it had then.
            weight_sync(model, self.version)

    def run(self) -> RunResult:
        cfg, last = self.config, {}
        progress = Progress(cfg.steps, start=self.step, enabled=cfg.metrics.progress)
        stop_reason = "completed"
        try:
            while self.step < cfg.steps:
                if reason := self.run_budget.exhausted():
                    stop_reason = reason
                    break
                last = self.logger.log(self.step + 1, self._iteration())
                self.step += 1
                progress.update(self.step, last)
                if self.step % cfg.checkpoint.every == 0:
                    self.save()
            self.save()
            if self.evaluator is not None and cfg.eval_every == 0:
                last = self.logger.log(
                    self.step, {f"eval/{k}": v for k, v in self.evaluator(self.model, self.step).items()}
                )
        finally:
            progress.close()
            self.logger.close()
        if cfg.metrics.report:
            from agentrl.report.html import build_report

            build_report(self.run_dir, title=f"RL run ({stop_reason})")
        return RunResult(self.step, stop_reason, last, self.run_dir)

    def _iteration(self) -> dict[str, Any]:
        cfg, t0 = self.config, time.perf_counter()
        temperature = self.temperature.value(self.step)
        request = RolloutRequest(
            step=self.step,
            policy_version=self.version,
            tasks=[self.tasks[i] for i in self.order.next(cfg.tasks_per_step)],
            samples_per_task=cfg.samples_per_task,
            temperature=temperature,
            seed=cfg.seed * 1_000_003 + self.step,
            budgets=dict(cfg.budget.per_task),
            default_budget=cfg.budget.default,
        )
        produced = self.rollout(request)
        # Failed episodes (environment or engine errors) have no meaningful reward, and partial ones (k1.5 partial
        # rollouts) are unfinished: the rollout source keeps those and resumes them next iteration. Neither is
        # trained on; both are counted.
        trajs: list[Trajectory] = [self.budget.truncate(t) for t in produced if t.status in _TRAINABLE]

        if not trajs:
            reasons = sorted({t.failure_reason or "?" for t in produced})[:3]
            raise AgentRLError(
                f"step {self.step}: none of {len(produced)} rollouts finished (failed or partial); e.g. {reasons}"
            )
        t_rollout = time.perf_counter()
        out = self.reward_fn(trajs)
        rewards = self.budget.apply_penalty(trajs, out.rewards)
        for aux in self.learner.aux_losses:
            aux.refresh()  # e.g. critic examples the reward function just built from these rollouts
        t_reward = time.perf_counter()
        metrics = self.learner.update(trajs, rewards, self.step, temperature)
        t_train = time.perf_counter()
        self.version += 1
        if self.weight_sync is not None:
            self.weight_sync(self.model, self.version)
        t_sync = time.perf_counter()
        self.run_budget.charge(tokens=sum(len(t.token_ids) for t in trajs), judge_tokens=out.judge_tokens)
        metrics.update(reward_metrics(trajs, out, rewards, cfg.success_threshold))
        for aux in self.learner.aux_losses:
            metrics.update(aux.metrics())
        metrics.update(self.budget.metrics(trajs))
        metrics.update(self.run_budget.metrics())
        metrics.update(
            {
                "temperature": temperature,
                "rollout/failed_frac": sum(t.status == TrajectoryStatus.failed for t in produced)
                / len(produced),
                "rollout/partial_frac": sum(t.status == TrajectoryStatus.partial for t in produced)
                / len(produced),
                "policy_version": self.version,
                "time/rollout_s": t_rollout - t0,
                "time/reward_s": t_reward - t_rollout,
                "time/train_s": t_train - t_reward,
                "time/weight_sync_s": t_sync - t_train,
                "time/step_s": t_sync - t0,
                "throughput/rollout_tokens_per_s": metrics["tokens/generated"] / max(t_rollout - t0, 1e-9),
            }
        )
        if self.evaluator is not None and cfg.eval_every and (self.step + 1) % cfg.eval_every == 0:
            metrics.update({f"eval/{k}": v for k, v in self.evaluator(self.model, self.step + 1).items()})
        return metrics

    def state_dict(self) -> dict[str, Any]:
        learner = self.learner
        return {
            "step": self.step,
            "version": self.version,
            "model": self.model.state_dict(),
            "optimizer": learner.optimizer.state_dict(),
            "reference": None if learner.reference is None else learner.reference.state_dict(),
            "order": self.order.state_dict(),
            "ptx": None if learner.ptx is None else learner.ptx.state_dict(),
            "aux": {a.name: a.state_dict() for a in learner.aux_losses},
            "run_budget": self.run_budget.state_dict(),
            "rng": rng_state(),
            "config": self.config.model_dump(mode="json"),
        }

    def save(self) -> Path:
        return save_train_state(
            self.run_dir / "checkpoints", self.step, self.state_dict(), keep=self.config.checkpoint.keep
        )

    def _load(self, state: dict[str, Any]) -> None:
        learner = self.learner
        self.model.load_state_dict(state["model"])
        learner.optimizer.load_state_dict(state["optimizer"])
        if learner.reference is not None and state["reference"] is not None:
            learner.reference.load_state_dict(state["reference"])
        self.order.load_state_dict(state["order"])
        if learner.ptx is not None and state["ptx"] is not None:
            learner.ptx.load_state_dict(state["ptx"])
        for aux in learner.aux_losses:
            if aux.name in state.get("aux", {}):
                aux.load_state_dict(state["aux"][aux.name])
        self.run_budget.load_state_dict(state["run_budget"])
        self.step, self.version = int(state["step"]), int(state["version"])
        set_rng_state(state["rng"])
