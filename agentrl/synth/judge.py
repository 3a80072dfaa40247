"""The judge: check a trajectory against its task rubric; only passing trajectories are kept.

K2 §3.1: "an LLM-based judge evaluates each trajectory against the task rubrics. Only trajectories that meet the
success criteria are retained", i.e. large-scale rejection sampling. The procedural judge scores every rubric item
that can be checked from the episode record (success criteria from tool_world's final-state check and required
outputs; the expected tool-use pattern; checkpoints such as retrying transient failures and asking for a missing
id). An endpoint judge (see `roles.py`) can add an LLM verdict, which may only veto a pass, never rescue a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentrl.synth.episodes import Episode

REQUIRED = ("final_state", "required_outputs", "tool_pattern", "valid_calls", "retries", "clarifies")


@dataclass
class Verdict:
    passed: bool
    scores: dict[str, float]
    reasons: list[str] = field(default_factory=list)
    judge: str = "procedural"

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": "pass" if self.passed else "fail", "scores": self.scores, "reasons": self.reasons,
                "judge": self.judge}  # fmt: skip


def _is_subsequence(pattern: list[str], seq: list[str]) -> bool:
    it = iter(seq)
    return all(any(x == p for x in it) for p in pattern)


def judge_episode(ep: Episode, require_tool_pattern: bool = True) -> Verdict:
    """Score the rubric items; pass iff every required item holds (`tool_pattern` only if `require_tool_pattern`:
    without it the judge checks outcomes, so a demonstrator's privileged shortcut that skips a lookup passes)."""
    calls = ep.session.calls
    ok_names = [c["name"] for c in calls if c["kind"] in ("ok", "partial")]
    s: dict[str, float] = {}
    s["final_state"] = float(ep.details.get("state_ok", False))
    s["required_outputs"] = float(ep.details.get("answer_ok", False) and ep.final_answer is not None)
    s["tool_pattern"] = float(_is_subsequence([g.name for g in ep.task.gold], ok_names))
    s["valid_calls"] = float(all(c["kind"] not in ("bad_json", "bad_args", "unknown_tool") for c in calls))
    retried = True
    for i, c in enumerate(calls):
        if c["kind"] in ("transient", "partial"):
            nxt = calls[i + 1] if i + 1 < len(calls) else None
            retried &= nxt is not None and nxt["name"] == c["name"] and nxt["arguments"] == c["arguments"]
    s["retries"] = float(retried)
    s["clarifies"] = float(
        ep.task.vague is None or ep.session.revealed_after_calls == 0
    )  # asked before acting
    glitches = sum(c["kind"] in ("transient", "partial") for c in calls)
    s["efficient"] = float(len(calls) <= len(ep.task.gold) + glitches + 1)
    s["no_invalid_response"] = float(not ep.invalid_response)
    required = [k for k in REQUIRED if require_tool_pattern or k != "tool_pattern"]
    failed = [k for k in (*required, "no_invalid_response") if s[k] < 1.0]
    reasons = [f"{k} failed" for k in failed]
    if ep.details.get("state_diff"):
        reasons.append("state: " + "; ".join(ep.details["state_diff"][:2]))
    if ep.details.get("missing_outputs"):
        reasons.append(f"missing outputs: {ep.details['missing_outputs']}")
    return Verdict(passed=not failed, scores=s, reasons=reasons)
