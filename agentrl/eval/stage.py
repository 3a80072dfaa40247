"""`agentrl eval`: a checkpoint on held-out tool_world tasks, with vLLM as the engine.

The environment runs in process by default (`env: local`), or behind any server URL that speaks the protocol
(`env: http://host:port`, e.g. from `docker compose up` or `agentrl serve env tool_world`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentrl.errors import AgentRLError
from agentrl.rewards.critic_prompt import CriticPromptConfig
from agentrl.rewards.engine_critic import VerdictRule
from agentrl.rewards.judge import JudgeConfig


class EvalStageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    checkpoint: str = "runs/demo/sft/final"
    """HF-format checkpoint to evaluate."""
    tasks: str = "runs/demo/synth/tasks_heldout.jsonl"
    """Held-out task specs (JSONL, as written by `agentrl synth`)."""
    limit: int = Field(100, ge=1)
    """Evaluate at most this many tasks."""
    env: str = "local"
    """`local` (tool_world in process) or an environment server URL."""
    env_token: str | None = None
    """Bearer token for the environment server, if it requires one."""
    max_tokens: int = Field(384, ge=1)
    """Generated-token budget per episode."""
    temperature: float = Field(0.0, ge=0)
    """0 = greedy."""
    max_model_len: int = Field(1024, ge=64)
    out: str | None = None
    """Write the summary and every trajectory here (JSON + JSONL)."""
    judge: JudgeConfig | None = None
    """Score every trajectory with this LLM judge (OpenAI-compatible server) against its rubrics."""
    rubric_paths: list[str] | None = None
    """Rubric files/folders for the judge and the critic; None: the repo's rubrics/ folder."""
    critic_samples: int = Field(0, ge=0)
    """>= 2: also score the checkpoint as its own critic on pairs of its samples with known winners."""
    critic_temperature: float = Field(1.0, gt=0)
    critic_verdict: VerdictRule = "swap_debiased"
    """How the critic decides a pair (agentrl/rewards/engine_critic.py); the other rule is reported too."""
    critic_prompt: CriticPromptConfig = CriticPromptConfig(
        instructions="brief", rubric_detail="names", max_conversation_chars=300, max_response_chars=500
    )
    """The demo's compact critic prompt (fits k2-tiny's context); use the defaults for a large model."""

    @field_validator("critic_samples")
    @classmethod
    def _pairs_need_two(cls, value: int) -> int:
        if value == 1:
            raise ValueError("critic_samples must be 0 (off) or at least 2 (the critic compares pairs)")
        return value


def run_eval_stage(cfg: EvalStageConfig) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from agentrl.demo.stages import load_tasks
    from agentrl.engine.vllm_engine import VLLMEngine
    from agentrl.eval.tool_use import evaluate_tool_use

    if not Path(cfg.tasks).is_file():
        raise AgentRLError(f"task file not found: {cfg.tasks}")
    if not (Path(cfg.checkpoint) / "config.json").is_file():
        raise AgentRLError(f"not a checkpoint directory (no config.json): {cfg.checkpoint}")
    if cfg.env == "local":
        from agentrl.rollout.envs import LocalEnv
        from environments.tool_world.server import ToolWorldEnv

        env: Any = LocalEnv(ToolWorldEnv)
    else:
        from agentrl.rollout.envs import open_env

        env = open_env(cfg.env, token=cfg.env_token)
    tasks = load_tasks(cfg.tasks, cfg.limit)
    tokenizer = AutoTokenizer.from_pretrained(cfg.checkpoint)
    engine = VLLMEngine(cfg.checkpoint, max_model_len=cfg.max_model_len)
    summary, trajectories = evaluate_tool_use(
        engine, tokenizer, tasks, env, temperature=cfg.temperature, max_tokens=cfg.max_tokens
    )
    if cfg.judge is not None:
        from agentrl.eval.scores import judge_scores

        summary.update(judge_scores(cfg.judge, trajectories, tasks, cfg.rubric_paths))
    if cfg.critic_samples:
        from agentrl.eval.scores import critic_scores

        summary.update(
            critic_scores(
                engine,
                tokenizer,
                tasks,
                env,
                samples=cfg.critic_samples,
                temperature=cfg.critic_temperature,
                max_tokens=cfg.max_tokens,
                max_model_len=cfg.max_model_len,
                prompt=cfg.critic_prompt,
                rubric_paths=cfg.rubric_paths,
                verdict=cfg.critic_verdict,
            )
        )
    if cfg.out:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        with (out / "trajectories.jsonl").open("w") as fh:
            for traj in trajectories:
                fh.write(traj.model_dump_json() + "\n")
    return {"checkpoint": cfg.checkpoint, **summary}
