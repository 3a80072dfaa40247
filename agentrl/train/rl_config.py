"""`RLConfig`: the RL trainer's typed config tree. Every field is documented and range-checked, so a bad config
fails at load time, before any model is built (negative τ, unknown objective, non-positive temperature, ...).
Checks that need the task set (a budget below the prompt length) run in `RLTrainer.__init__`, also before work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentrl.optim.config import MuonClipConfig
from agentrl.train.budget import RunBudgetConfig, SampleBudgetConfig
from agentrl.train.losses import ObjectiveConfig
from agentrl.train.schedules import ScheduleConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class OptimizerConfig(_Strict):
    name: Literal["muonclip", "adamw"] = "muonclip"
    """`muonclip` (K2: Muon + QK-Clip + aux-free balancing) or `adamw` (torch.optim.AdamW)."""
    muonclip: MuonClipConfig = Field(default_factory=MuonClipConfig)
    """MuonClip settings (lr, weight decay, QK-Clip τ, ...)."""
    lr: float = Field(1e-4, ge=0)
    """AdamW learning rate (MuonClip uses `muonclip.lr`)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this; None disables."""

    def build(self) -> Callable[[Any], Any]:
        """The optimizer factory `model -> torch.optim.Optimizer` this section describes."""
        if self.name == "muonclip":
            from agentrl.optim import build_muonclip

            return lambda model: build_muonclip(model, self.muonclip)
        import torch

        return lambda model: torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class PTXConfig(_Strict):
    beta: float = Field(0.0, ge=0)
    """Weight β of the auxiliary next-token loss on the curated SFT set; 0 disables PTX."""
    batch_size: int = Field(4, gt=0)
    """SFT examples per optimizer step."""


class RoutingConfig(_Strict):
    measure: bool = True
    """Log `routing/mismatch_score_vs_train` (π_old scoring pass vs training forward; see train/routing.py)."""
    after_update: bool = False
    """Also log `routing/mismatch_after_update` (one extra no-grad forward per step)."""
    replay: Literal["off", "score", "rollout"] = "off"
    """Routing replay in the training forward: `score` reuses the π_old scoring pass's expert choices, `rollout` the
    engine's (trajectories must carry `metadata["routed_experts"]`; unreported positions keep the scoring pass's)."""


class CheckpointConfig(_Strict):
    every: int = Field(1, gt=0)
    """Write a resumable checkpoint every this many steps (and always when the run stops)."""
    keep: int = Field(2, gt=0)
    """Keep this many most recent checkpoints."""


class MetricsConfig(_Strict):
    tensorboard: bool = True
    """Also write TensorBoard event files under run_dir/tb."""
    progress: bool = True
    """Show a rich progress display on a terminal."""
    report: bool = True
    """Write run_dir/report/index.html with PNG curves when the run ends."""


class RLConfig(_Strict):
    run_dir: str = "runs/rl"
    """Directory for checkpoints, metrics.jsonl, TensorBoard logs and the report."""
    seed: int = 0
    """Seeds the data order, sampling seeds and the global RNGs."""
    steps: int = Field(20, gt=0)
    """RL iterations (rollout → reward → update → sync)."""
    tasks_per_step: int = Field(4, gt=0)
    """Prompts per iteration."""
    samples_per_task: int = Field(4, ge=2)
    """K responses per prompt; the group baseline r̄ needs K >= 2."""
    success_threshold: float = 1.0
    """A sample counts as a success when its reward (before budget penalty) is >= this, unless the reward function
    reports success itself."""
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    """The policy objective."""
    temperature: ScheduleConfig = Field(
        default_factory=lambda: ScheduleConfig(kind="linear", start=1.0, end=0.6, steps=20)
    )
    """Sampling temperature schedule (K2 temperature decay; endpoints not in the paper)."""
    lr_schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    """Multiplier on every param group's base learning rate."""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    """Optimizer and gradient clipping."""
    old_logprobs: Literal["trainer", "rollout"] = "trainer"
    """π_old in the objective: the trainer's score of the sampled tokens before the update (default; no
    train/inference numerics in the ratio), or the engine's sampling logprobs."""
    tis_cap: float | None = Field(None, gt=0)
    """Truncated importance-sampling correction: weight by min(π_train/π_rollout, cap); None disables."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Forward passes of the update (scoring, policy loss, PTX): fp32, or bf16 autocast over fp32 master weights and
    optimizer state (the GPU setting; on CPU bf16 matmuls are slower than fp32)."""
    updates_per_batch: int = Field(1, gt=0)
    """Passes over each rollout batch (K2's objective is valid off-policy, so > 1 is allowed)."""
    groups_per_minibatch: int | None = Field(None, gt=0)
    """Groups (prompts) per optimizer step; None = the whole batch in one step."""
    groups_per_microbatch: int | None = Field(None, gt=0)
    """Groups per forward/backward (gradient accumulation inside a minibatch); None = the minibatch."""
    budget: SampleBudgetConfig = Field(default_factory=SampleBudgetConfig)
    """Per-sample token budget per task type, and the truncation penalty."""
    run_budget: RunBudgetConfig = Field(default_factory=RunBudgetConfig)
    """Run-level budgets (tokens, wall-clock, judge tokens)."""
    ptx: PTXConfig = Field(default_factory=PTXConfig)
    """PTX auxiliary loss."""
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    """MoE routing mismatch measurement and replay."""
    eval_every: int = Field(0, ge=0)
    """Run the evaluator every this many steps (and at the end); 0 = only at the end."""
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    """Checkpoint cadence and retention."""
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    """Logging, progress display and report."""

    @model_validator(mode="after")
    def _check(self) -> RLConfig:
        if self.temperature.min_value() <= 0:
            raise ValueError(
                "temperature schedule must stay > 0 (start and end); greedy sampling has no logprobs"
            )
        if self.lr_schedule.min_value() < 0:
            raise ValueError("lr_schedule must stay >= 0")
        mini = self.groups_per_minibatch or self.tasks_per_step
        if mini > self.tasks_per_step:
            raise ValueError(f"groups_per_minibatch ({mini}) exceeds tasks_per_step ({self.tasks_per_step})")
        if self.groups_per_microbatch is not None and self.groups_per_microbatch > mini:
            raise ValueError(
                f"groups_per_microbatch ({self.groups_per_microbatch}) exceeds the minibatch ({mini})"
            )
        return self
