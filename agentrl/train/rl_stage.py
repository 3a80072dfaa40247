"""`agentrl rl`: RL from a checkpoint on tool_world tasks, rolling out with an in-process vLLM engine.

The loop itself (`RLTrainer`) is environment-agnostic; this stage wires the single-machine default: vLLM engine
(weights synced after every update), token-in/token-out agent loop, tool_world in process, verifiable reward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentrl.errors import AgentRLError
from agentrl.train.rl_config import RLConfig


class RLStageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    checkpoint: str = "runs/demo/sft/final"
    """Policy to start from (HF format)."""
    tasks: str = "runs/demo/synth/tasks_rl.jsonl"
    """RL task specs (JSONL, as written by `agentrl synth`)."""
    task_pool: int = Field(400, ge=1)
    """Use at most this many RL tasks."""
    eval_tasks: str | None = "runs/demo/synth/tasks_heldout.jsonl"
    """Held-out tasks for the periodic evaluation (`rl.eval_every`); None disables it."""
    eval_limit: int = Field(50, ge=1)
    """Held-out tasks per evaluation."""
    max_model_len: int = Field(1024, ge=64)
    """vLLM context length."""
    rl: RLConfig = Field(default_factory=RLConfig)
    """The trainer: objective, budgets, temperature decay, optimizer, checkpoints, metrics."""


def run_rl_stage(cfg: RLStageConfig) -> dict[str, Any]:
    from agentrl.demo.stages import load_tasks, make_engine, run_rl
    from model.checkpoint import save_checkpoint

    if not Path(cfg.tasks).is_file():
        raise AgentRLError(f"task file not found: {cfg.tasks}")
    if not (Path(cfg.checkpoint) / "config.json").is_file():
        raise AgentRLError(f"not a checkpoint directory (no config.json): {cfg.checkpoint}")
    engine = make_engine(cfg.checkpoint, cfg.max_model_len, cfg.rl.seed)
    heldout = (
        load_tasks(cfg.eval_tasks, cfg.eval_limit)
        if cfg.eval_tasks and Path(cfg.eval_tasks).is_file()
        else None
    )
    out = run_rl(engine, cfg.checkpoint, load_tasks(cfg.tasks, cfg.task_pool), cfg.rl, eval_tasks=heldout)
    final = save_checkpoint(out["model"], out["tokenizer"], Path(cfg.rl.run_dir) / "final")
    return {"steps": out["steps"], "stop_reason": out["stop_reason"], "checkpoint": str(final)}
