"""The demo's evaluation and RL stages: vLLM engine + token-in/token-out agent loop over in-process tool_world.

Reward for the demo's RL is tool_world's verifiable reward (final-state check + required outputs, tau-bench style),
read from the trajectory (`env_reward`); truncated samples get the budget penalty inside the trainer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentrl.schemas.trajectory import Trajectory


def load_tasks(path: str | Path, limit: int) -> list[dict[str, Any]]:
    tasks = []
    with Path(path).open() as fh:
        for line in fh:
            if line.strip():
                tasks.append(json.loads(line))
            if len(tasks) >= limit:
                break
    return tasks


class EnvReward:
    """`RewardFn`: the environment's own verifiable reward; success = reward 1 on a finished episode."""

    def __call__(self, trajectories: Sequence[Trajectory]) -> Any:
        from agentrl.train.interfaces import RewardOutput

        rewards = [float(t.env_reward or 0.0) for t in trajectories]
        success = [
            r >= 1.0 - 1e-9 and t.status.value == "ok" for r, t in zip(rewards, trajectories, strict=True)
        ]
        return RewardOutput(rewards=rewards, success=success)


def make_engine(checkpoint: str, max_model_len: int, seed: int) -> Any:
    from agentrl.engine.vllm_engine import VLLMEngine

    return VLLMEngine(checkpoint, max_model_len=max_model_len, seed=seed)


def run_eval(engine: Any, tokenizer: Any, tasks: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
    from agentrl.eval.tool_use import evaluate_tool_use
    from agentrl.rollout.envs import LocalEnv
    from environments.tool_world.server import ToolWorldEnv

    summary, _ = evaluate_tool_use(engine, tokenizer, tasks, LocalEnv(ToolWorldEnv), max_tokens=max_tokens)
    return summary


class HeldoutEvaluator:
    """`Evaluator`: held-out success and tool-call validity through the engine, which holds the synced weights."""

    def __init__(self, engine: Any, tokenizer: Any, tasks: list[dict[str, Any]], max_tokens: int) -> None:
        self.engine, self.tokenizer, self.tasks, self.max_tokens = engine, tokenizer, tasks, max_tokens

    def __call__(self, model: Any, step: int) -> dict[str, float]:
        summary = run_eval(self.engine, self.tokenizer, self.tasks, self.max_tokens)
        return {"success": summary["success"], "tool_call_validity": summary["tool_call_validity"]}


def run_rl(
    engine: Any,
    checkpoint: str,
    rl_tasks: list[dict[str, Any]],
    rl_config: Any,
    eval_tasks: list[dict[str, Any]] | None = None,
    eval_max_tokens: int = 384,
) -> dict[str, Any]:
    """RL from `checkpoint`, rolling out with `engine` (weights synced after every update)."""
    from agentrl.rollout.agent_loop import AgentLoop, LoopConfig
    from agentrl.rollout.envs import LocalEnv
    from agentrl.train.agent_rollout import AgentLoopRollout, RLTask
    from agentrl.train.rl_loop import RLTrainer
    from agentrl.train.sync import EngineSync
    from environments.tool_world.server import ToolWorldEnv
    from model.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(checkpoint)
    eval_fn = HeldoutEvaluator(engine, tokenizer, eval_tasks, eval_max_tokens) if eval_tasks else None
    env = LocalEnv(ToolWorldEnv)
    loop = AgentLoop(engine, tokenizer, LoopConfig(max_turns=8, max_context_tokens=1024))
    tasks = [RLTask(id=t["id"], task_type="tool_use", env="tool_world", spec=t) for t in rl_tasks]
    trainer = RLTrainer(
        rl_config,
        model,
        tasks,
        AgentLoopRollout(loop, env_for=lambda _task: env),
        EnvReward(),
        rl_config.objective.build(),
        rl_config.optimizer.build(),
        pad_id=tokenizer.pad_token_id,
        weight_sync=EngineSync(engine),
        evaluator=eval_fn,
        resume=False,
    )
    result = trainer.run()
    return {"steps": result.steps, "stop_reason": result.stop_reason, "model": model, "tokenizer": tokenizer}
