"""Tool-use evaluation: run a policy on held-out tool_world tasks with the token-in/token-out agent loop.

Metrics (issue 5):
- success: the environment's verifiable reward (final-state check + required outputs) is 1;
- tool_call_validity: the share of the policy's tool calls that are parseable, name a declared tool and carry
  arguments that are a JSON object valid against that tool's schema (checked here with jsonschema, independent of
  the environment's own checks); transient environment failures ("busy") don't count against the policy;
- mean_turns: assistant turns per episode;
- by_template (tool_world tasks): per `domain.template`, the episodes, their success and, where the task carries a
  gold plan, how often the first tool call is the plan's first tool. A policy that skips the lookup a plan starts
  with, or looks up and then copies the wrong value, shows up there and not in the totals.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from jsonschema import Draft202012Validator

from agentrl.engine.base import SamplingSpec
from agentrl.schemas.trajectory import Trajectory

MALFORMED_CALL_ID = "functions.invalid:0"


def call_validity(trajectory: Trajectory, tools: list[dict[str, Any]]) -> tuple[int, int]:
    """(valid, total) tool calls in one trajectory."""
    schemas = {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools if "function" in t}
    valid = total = 0
    for message in trajectory.messages:
        if message.get("role") == "tool" and message.get("tool_call_id") == MALFORMED_CALL_ID:
            total += 1  # an unparseable tool-call section
        for call in message.get("tool_calls") or [] if message.get("role") == "assistant" else []:
            total += 1
            fn = call.get("function", {})
            schema = schemas.get(fn.get("name"))
            if schema is None:
                continue
            try:
                args = json.loads(fn.get("arguments") or "")
            except (json.JSONDecodeError, TypeError):
                continue
            if isinstance(args, dict) and not list(Draft202012Validator(schema).iter_errors(args)):
                valid += 1
    return valid, total


def first_tool(trajectory: Trajectory) -> str | None:
    """The name of the first tool the policy called, or None when it called none."""
    for message in trajectory.messages:
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if calls:
            return calls[0].get("function", {}).get("name")
    return None


def _template_rows(episodes: list[tuple[float, Trajectory]]) -> dict[str, Any]:
    planned = [t for _, t in episodes if t.metadata.get("planned_first_tool")]
    row: dict[str, Any] = {"n": len(episodes), "success": sum(ok for ok, _ in episodes) / len(episodes)}
    if planned:
        row["first_call_as_planned"] = sum(
            first_tool(t) == t.metadata["planned_first_tool"] for t in planned
        ) / len(planned)
    return row


def summarize(
    trajectories: Sequence[Trajectory], tools_by_task: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Success rate, tool-call validity and mean turns, overall, per task level and per task template."""
    valid = total = 0
    by_level: dict[str, list[float]] = defaultdict(list)
    by_template: dict[str, list[tuple[float, Trajectory]]] = defaultdict(list)
    successes = []
    for traj in trajectories:
        ok = float((traj.env_reward or 0.0) >= 1.0 - 1e-9 and traj.status.value == "ok")
        successes.append(ok)
        by_level[str(traj.metadata.get("level", "?"))].append(ok)
        if traj.metadata.get("template"):
            by_template[traj.metadata["template"]].append((ok, traj))
        v, t = call_validity(traj, tools_by_task.get(traj.task_id, []))
        valid, total = valid + v, total + t
    n = max(1, len(trajectories))
    return {
        "episodes": len(trajectories),
        "success": sum(successes) / n,
        "tool_call_validity": valid / total if total else 0.0,
        "tool_calls": total,
        "mean_turns": statistics.fmean(t.num_turns for t in trajectories) if trajectories else 0.0,
        "failed": sum(t.status.value == "failed" for t in trajectories),
        "truncated": sum(t.status.value == "truncated" for t in trajectories),
        "success_by_level": {k: sum(v) / len(v) for k, v in sorted(by_level.items())},
        "by_template": {k: _template_rows(v) for k, v in sorted(by_template.items())},
    }


def evaluate_tool_use(
    engine: Any,
    tokenizer: Any,
    tasks: Sequence[dict[str, Any]],
    env: Any,
    temperature: float = 0.0,
    max_tokens: int = 256,
    max_context_tokens: int = 1024,
    seed: int = 0,
) -> tuple[dict[str, Any], list[Trajectory]]:
    """Run every task once (greedy by default) and summarize. `env` has the EnvClient verbs (HTTP or LocalEnv)."""
    from agentrl.rollout.agent_loop import AgentLoop, LoopConfig
    from agentrl.rollout.episode import EpisodeSpec

    loop = AgentLoop(engine, tokenizer, LoopConfig(max_turns=8, max_context_tokens=max_context_tokens))
    specs = [
        EpisodeSpec(
            task=task,
            env=env,
            sampling=SamplingSpec(temperature=temperature, max_tokens=max_tokens, seed=seed + i),
            task_id=task["id"],
            task_type="tool_use",
            env_seed=seed + i,
        )
        for i, task in enumerate(tasks)
    ]
    trajectories = loop.run(specs)
    for traj, task in zip(trajectories, tasks, strict=True):
        traj.metadata["level"] = task.get("level")
        if task.get("template"):
            traj.metadata["template"] = f"{task.get('domain', '?')}.{task['template']}"
        if task.get("gold"):
            traj.metadata["planned_first_tool"] = task["gold"][0]["name"]
    tools_by_task = {
        task["id"]: [
            {"type": "function", "function": {"name": t["name"], "parameters": t.get("parameters", {})}}
            for t in task.get("tools", [])
        ]
        for task in tasks
    }
    return summarize(trajectories, tools_by_task), trajectories
