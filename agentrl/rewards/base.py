"""The `Reward` interface and the helpers every reward shares.

architecture.md: `Reward.score(trajectory) -> float + details`. Verifiers also need the task (the reference
answer, hidden tests, expected state, constraints), so the signature here is `score(subject, task)`, where
`subject` is a `Trajectory` or a plain response string and `task` is a mapping or pydantic model. A reward that
cannot decide (a judge that failed) returns `abstained=True`; composition then leaves it out instead of
treating it as a zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from agentrl.errors import AgentRLError
from agentrl.schemas.trajectory import Trajectory

Subject = Trajectory | str


class RewardError(AgentRLError):
    """A task spec or reward input is malformed (missing key, wrong type)."""


class RewardResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: float = Field(description="The scalar reward; 0.0 when abstained.")
    details: dict[str, Any] = Field(default_factory=dict)
    abstained: bool = Field(default=False, description="True when the reward could not be computed.")

    @classmethod
    def abstain(cls, reason: str, **details: Any) -> RewardResult:
        return cls(value=0.0, details={"abstain_reason": reason, **details}, abstained=True)


@runtime_checkable
class Reward(Protocol):
    """Anything that scores one response or trajectory against its task."""

    name: str

    def score(self, subject: Subject, task: Any) -> RewardResult: ...


def content_text(content: Any) -> str:
    """OpenAI message content is a string, None, or a list of parts; return its text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def response_text(subject: Subject) -> str:
    """The final assistant text: the string itself, or the last assistant message with text content."""
    if isinstance(subject, str):
        return subject
    if not isinstance(subject, Trajectory):
        raise RewardError(f"expected a Trajectory or a str, got {type(subject).__name__}")
    for msg in reversed(subject.messages):
        if msg.get("role") == "assistant":
            text = content_text(msg.get("content"))
            if text.strip():
                return text
    return ""


def assistant_texts(subject: Subject) -> list[str]:
    """Every assistant text in order (for claims made before the final turn)."""
    if isinstance(subject, str):
        return [subject]
    return [content_text(m.get("content")) for m in subject.messages if m.get("role") == "assistant"]


def tool_outputs(subject: Subject) -> list[str]:
    """Text of every tool-result message in order (empty for a plain response)."""
    if isinstance(subject, str):
        return []
    return [content_text(m.get("content")) for m in subject.messages if m.get("role") == "tool"]


def told_texts(subject: Trajectory) -> list[str]:
    """What the agent was told: user messages and tool results that are not errors (`{"error": ...}`)."""
    out = []
    for m in subject.messages:
        text = content_text(m.get("content"))
        if m.get("role") == "user" or (m.get("role") == "tool" and not _is_error_result(text)):
            out.append(text)
    return out


def _is_error_result(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and "error" in value


def task_field(task: Any, key: str, *, required: bool = True, default: Any = None) -> Any:
    """Read `key` from a task given as a mapping, a pydantic model or an object with attributes."""
    if isinstance(task, Mapping):
        if key in task:
            return task[key]
        spec = task.get("verifier")  # tasks may nest their checking spec under "verifier"
        if isinstance(spec, Mapping) and key in spec:
            return spec[key]
    elif task is not None and hasattr(task, key):
        return getattr(task, key)
    if required:
        tid = task_field(task, "id", required=False) if key != "id" else None
        where = f"task {tid!r}" if tid else "task"
        raise RewardError(f"{where} has no {key!r} field, which this verifier needs")
    return default


def stable_json(obj: Any) -> str:
    """Canonical JSON for hashing (sorted keys, no whitespace)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
