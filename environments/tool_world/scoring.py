"""Reward of a tool_world episode: final-state match plus required outputs (tau-bench style).

tau-bench scores an episode 1 when the database ends exactly in the state the gold actions produce and the
agent's replies contain every required output, else 0. We do the same: `expected_state` is computed at task
creation by executing the gold plan (without stochasticity), so the check needs no hand-written diff. Row
order within a table is ignored. The details say what differed, for debugging and for the judge's rubric scores.

Deviation from tau-bench: a required output must also be *grounded* (`TaskSpec.grounded_outputs`, on by default):
it counts only if it appears in the episode's evidence, i.e. a user message or a successful tool result. tau-bench's
outputs are free-form facts a guess rarely hits; ours can come from small value pools (a status, a room), and RL on
the CPU demo learned to answer such questions without a lookup and be right often enough to be rewarded.

Partial credit (`TaskSpec.partial_credit` p, off by default): a failed episode earns p x progress, where progress is
the share of the task's checkpoints it reached: each required output the user did not give and the agent fetched
(it is in a successful tool result), and the expected final state when the task changes the state. Checkpoint
scores are common in agent benchmarks (TheAgentCompany's checkpoints, AgentBoard's progress rate); here they let RL
tell a lookup whose value was mis-copied (progress) from a guess (none), which a binary reward scores alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from environments.tool_world.spec import State, TaskSpec


def _canon(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows)


def state_diff(expected: State, actual: State, limit: int = 5) -> list[str]:
    """Human-readable differences between two states (empty list when they match)."""
    out: list[str] = []
    for table in sorted(set(expected) | set(actual)):
        want, got = _canon(expected.get(table, [])), _canon(actual.get(table, []))
        if want == got:
            continue
        missing = [r for r in want if r not in got]
        extra = [r for r in got if r not in want]
        out.extend(f"{table}: expected {r}" for r in missing)
        out.extend(f"{table}: unexpected {r}" for r in extra)
    return out[:limit]


def answer_missing(required: list[str], answer: str) -> list[str]:
    low = (answer or "").lower()
    return [s for s in required if str(s).lower() not in low]


def score_episode(
    task: TaskSpec | Mapping[str, Any],
    final_state: State,
    final_answer: str | None,
    evidence: str | None = None,
) -> tuple[float, dict[str, Any]]:
    """Reward 1.0 when the final state equals the expected one and the answer has every required string.

    `evidence`: what the agent was told during the episode (user messages, successful tool results). When given
    and the task has `grounded_outputs`, a required string the evidence lacks counts as missing: the agent could
    only have guessed it. Without evidence (scoring a bare answer) the check is skipped.
    """
    spec = task if isinstance(task, TaskSpec) else TaskSpec.model_validate(task)
    diff = state_diff(spec.expected_state, final_state)
    missing = answer_missing(spec.required_outputs, final_answer or "")
    ungrounded = []
    if evidence is not None and spec.grounded_outputs:
        ungrounded = [s for s in answer_missing(spec.required_outputs, evidence) if s not in missing]
    state_ok, answer_ok = not diff, not missing and not ungrounded
    progress = task_progress(spec, state_ok, evidence)
    reward = 1.0 if state_ok and answer_ok else spec.partial_credit * progress
    return reward, {
        "state_ok": state_ok,
        "answer_ok": answer_ok,
        "state_diff": diff,
        "missing_outputs": missing,
        "ungrounded_outputs": ungrounded,
        "progress": progress,
        "task_id": spec.id,
    }


def task_progress(spec: TaskSpec, state_ok: bool, evidence: str | None) -> float:
    """Share of checkpoints reached (1.0 for a task without any): required outputs that the user's messages lack
    and the evidence holds, plus the final state when the task changes it. Without evidence only the state counts."""
    told = f"{spec.user}\n{spec.reveal or ''}"
    to_fetch = answer_missing(spec.required_outputs, told)
    fetched = len(to_fetch) - len(answer_missing(to_fetch, evidence)) if evidence is not None else 0
    changes_state = bool(state_diff(spec.expected_state, spec.state))
    total = len(to_fetch) + changes_state
    reached = fetched + (changes_state and state_ok)
    return reached / total if total else 1.0
