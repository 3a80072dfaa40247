"""Task lists for the eval and RL stages, and a JSONL reader for task files.

`task_lists(config)` rebuilds the same repository and task factory as `run_synth` (procedural roles) and returns
the held-out and RL task specs, identical to tasks_heldout.jsonl / tasks_rl.jsonl of a run with the same config,
without generating trajectories. Each spec is a dict that tool_world resets with (`task_spec` over HTTP, or
`WorldSession(spec)` / `ToolWorldEnv().reset(task_spec=spec)` in-process); score an episode without HTTP with
`environments.tool_world.scoring.score_episode(spec, final_state, final_answer)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentrl.errors import AgentRLError
from agentrl.synth.config import SynthConfig
from agentrl.synth.tasks import TaskFactory, eval_task_lists
from environments.tool_world.spec import TaskSpec


class TaskFileError(AgentRLError):
    """A task or trajectory JSONL file has a broken line; the message names the file and line."""


def task_lists(config: SynthConfig | dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """{"heldout": [...], "rl": [...]} task specs for the config (default: the embedded default)."""
    from agentrl.synth.pipeline import build_repository

    cfg = config if isinstance(config, SynthConfig) else SynthConfig.model_validate(config or {})
    procedural = cfg.model_copy(
        update={"backend": cfg.backend.model_copy(update={"default": "procedural", "roles": {}})}
    )
    domains, _ = build_repository(procedural, None)
    factory = TaskFactory(domains, cfg.tools, cfg.tasks, cfg.seed)
    return eval_task_lists(factory, cfg.tasks, cfg.seed)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a broken line raises TaskFileError naming `path:line`."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise TaskFileError(f"cannot read {path}: {exc.strerror}") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{path}:{i}: broken JSONL line: {exc.msg} at column {exc.colno}") from None
        if not isinstance(rec, dict):
            raise TaskFileError(f"{path}:{i}: expected a JSON object, got {type(rec).__name__}")
        out.append(rec)
    return out


def load_tasks(path: str | Path) -> list[TaskSpec]:
    """Task specs from a JSONL file, validated; errors name the line and the field."""
    out = []
    for i, rec in enumerate(read_jsonl(path), 1):
        try:
            out.append(TaskSpec.model_validate(rec))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise TaskFileError(
                f"{path}: record {i} ({rec.get('id', '?')}): {where}: {first['msg']}"
            ) from None
    return out
