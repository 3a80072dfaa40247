"""tool_world final-state match (tau-bench style: K2's tool simulator rewards via final-state checks plus
required outputs; issue #4).

`task["expected_state"]` is a nested dict; the actual state is what the environment reported at the end of
the episode: `trajectory.metadata["final_state"]` (or pass it explicitly via `task["final_state"]`). Expected
keys are matched as a subset by default (the env may track more fields), or exactly with `mode="exact"`.
Leaves are compared for equality (numbers with a small tolerance); lists as a whole (order matters) unless
`unordered_lists`, where each row counts as one unit for partial credit. `required_outputs` (older tool_world
task files: `must_say`) are strings the agent must have said to the user (any assistant turn). A task with
`grounded_outputs: true` (tool_world's default) also needs each of them in what the agent was told: a user message or
a tool result that is not an error, as tool_world's own scorer checks; a right guess is not rewarded.
With `partial_credit`, reward = fraction of expected leaves matched (times the outputs fraction); otherwise
all-or-nothing, as in tau-bench.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from agentrl.rewards.base import (
    RewardError,
    RewardResult,
    Subject,
    assistant_texts,
    stable_json,
    task_field,
    told_texts,
)
from agentrl.schemas.trajectory import Trajectory

_MISSING = object()


def _equal(a: Any, b: Any, unordered_lists: bool) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        if unordered_lists:
            return sorted(map(stable_json, a)) == sorted(map(stable_json, b))
        return all(_equal(x, y, unordered_lists) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k], unordered_lists) for k in a)
    return a == b


def diff_state(
    expected: Mapping[str, Any], actual: Any, *, exact: bool, unordered_lists: bool, prefix: str = ""
) -> tuple[int, list[dict[str, Any]]]:
    """Return (number of expected leaves, mismatches). Dicts recurse; other values are leaves."""
    total, mismatches = 0, []
    actual_map = actual if isinstance(actual, Mapping) else {}
    for key, want in expected.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        got = actual_map.get(key, _MISSING)
        if unordered_lists and isinstance(want, list) and isinstance(got, list):
            # A table of rows: each expected row and each unexpected row is one unit (order ignored).
            want_c, got_c = Counter(map(stable_json, want)), Counter(map(stable_json, got))
            missing, extra = want_c - got_c, got_c - want_c
            total += max(len(want), 1) + sum(extra.values())
            mismatches += [
                {"path": path, "expected": row, "actual": "<missing row>"} for row in missing.elements()
            ]
            mismatches += [{"path": path, "expected": "<absent>", "actual": row} for row in extra.elements()]
            continue
        if isinstance(want, Mapping) and want and isinstance(got, Mapping):
            n, sub = diff_state(want, got, exact=exact, unordered_lists=unordered_lists, prefix=path)
            total += n
            mismatches += sub
            continue
        total += 1
        if got is _MISSING:
            mismatches.append({"path": path, "expected": want, "actual": "<missing>"})
        elif not _equal(want, got, unordered_lists):
            mismatches.append({"path": path, "expected": want, "actual": got})
    if exact:
        for key in actual_map:
            if key not in expected:
                total += 1
                path = f"{prefix}.{key}" if prefix else str(key)
                mismatches.append({"path": path, "expected": "<absent>", "actual": actual_map[key]})
    return total, mismatches


class FinalStateMatch:
    name = "tool_state"

    def __init__(
        self,
        *,
        mode: str = "subset",
        partial_credit: bool = False,
        unordered_lists: bool = False,
        state_key: str | None = None,
    ) -> None:
        if mode not in ("subset", "exact"):
            raise ValueError(f"mode must be 'subset' or 'exact', got {mode!r}")
        self.exact = mode == "exact"
        self.partial_credit = partial_credit
        self.unordered_lists = unordered_lists
        self.state_key = state_key

    @classmethod
    def for_tool_world(cls, *, partial_credit: bool = False) -> FinalStateMatch:
        """tool_world's convention: state = {table: [rows]}, compared exactly with row order ignored; the
        env's `state()` reports it under "tables"."""
        return cls(mode="exact", partial_credit=partial_credit, unordered_lists=True, state_key="tables")

    def _actual(self, subject: Subject, task: Any) -> Any:
        given = task_field(task, "final_state", required=False, default=None)
        if given is None and isinstance(subject, Trajectory):
            given = subject.metadata.get("final_state")
        if given is not None and self.state_key and isinstance(given, Mapping) and self.state_key in given:
            given = given[self.state_key]
        return given

    def score(self, subject: Subject, task: Any) -> RewardResult:
        expected = task_field(task, "expected_state")
        if not isinstance(expected, Mapping):
            raise RewardError(f"expected_state must be a mapping, got {type(expected).__name__}")
        actual = self._actual(subject, task)
        if actual is None:
            # No env-reported state (e.g. the env failed): undecidable, not a zero for the policy.
            return RewardResult.abstain("no final_state reported by the environment")
        total, mismatches = diff_state(
            expected, actual, exact=self.exact, unordered_lists=self.unordered_lists
        )
        state_frac = 1.0 if total == 0 else (total - len(mismatches)) / total
        said = "\n".join(assistant_texts(subject)).casefold()
        raw = task_field(task, "required_outputs", required=False, default=None)
        if raw is None:  # older tool_world task files call them must_say
            raw = task_field(task, "must_say", required=False, default=None)
        outputs = [str(o) for o in raw or []]
        missing = [o for o in outputs if o.casefold() not in said]
        ungrounded: list[str] = []
        if task_field(task, "grounded_outputs", required=False, default=False) and isinstance(
            subject, Trajectory
        ):
            told = "\n".join(told_texts(subject)).casefold()
            ungrounded = [o for o in outputs if o not in missing and o.casefold() not in told]
            missing = missing + ungrounded
        out_frac = 1.0 if not outputs else (len(outputs) - len(missing)) / len(outputs)
        if self.partial_credit:
            value = state_frac * out_frac
        else:
            value = float(not mismatches and not missing)
        return RewardResult(
            value=value,
            details={
                "state_fraction": state_frac,
                "mismatches": mismatches[:20],
                "missing_outputs": missing,
                "ungrounded_outputs": ungrounded,
                "outputs_fraction": out_frac,
            },
        )
