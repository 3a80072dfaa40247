"""Wire schemas of the environment protocol (pydantic v2).

Messages and tools use the OpenAI chat-completions format, so a rollout worker can feed an observation
straight into a chat template: `messages=[{role, content, tool_calls?, tool_call_id?}]` and
`tools=[{"type": "function", "function": {name, description, parameters}}]` (K2 §3.1 trains on exactly
this shape of multi-turn tool-use trajectory). An action is either a list of tool calls or a final answer.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROTOCOL_VERSION = "1.0"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCall(_Strict):
    """One tool call. `arguments` is the JSON *string* the model produced (it may be malformed; the
    environment reports that as a tool error, never as an HTTP error)."""

    id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(default="{}", max_length=1_000_000)

    @model_validator(mode="before")
    @classmethod
    def _accept_openai_shape(cls, data: Any) -> Any:
        # Accept OpenAI's nested form {id, type: "function", function: {name, arguments}} as well,
        # and a dict for `arguments` (serialised here), so clients can pass model output through.
        if isinstance(data, dict):
            data = dict(data)
            fn = data.pop("function", None)
            data.pop("type", None)
            if isinstance(fn, dict):
                data.setdefault("name", fn.get("name"))
                data.setdefault("arguments", fn.get("arguments", "{}"))
            if isinstance(data.get("arguments"), dict | list):
                data["arguments"] = json.dumps(data["arguments"])
        return data

    def openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


class Message(BaseModel):
    """An OpenAI-format chat message."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def openai(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Action(_Strict):
    """What the agent does in one step: tool calls, or a final answer (exactly one of the two).

    `content` is optional assistant text that accompanies tool calls (kept in the transcript)."""

    tool_calls: list[ToolCall] = Field(default_factory=list, max_length=64)
    final_answer: str | None = Field(default=None, max_length=1_000_000)
    content: str | None = Field(default=None, max_length=1_000_000)

    @model_validator(mode="after")
    def _one_kind(self) -> Action:
        if self.tool_calls and self.final_answer is not None:
            raise ValueError("an action has either tool_calls or final_answer, not both")
        if not self.tool_calls and self.final_answer is None:
            raise ValueError("an action needs tool_calls (non-empty) or final_answer")
        ids = [c.id for c in self.tool_calls]
        if len(set(ids)) != len(ids):
            raise ValueError("tool call ids must be unique within an action")
        return self

    def assistant_message(self) -> Message:
        """The assistant turn this action corresponds to, for transcripts."""
        if self.tool_calls:
            return Message(
                role="assistant", content=self.content, tool_calls=[c.openai() for c in self.tool_calls]
            )
        return Message(role="assistant", content=self.final_answer)


class Observation(_Strict):
    """The initial observation of an episode (returned by reset / session creation)."""

    session_id: str = ""
    task_id: str | None = None
    messages: list[Message]
    tools: list[dict[str, Any]] = Field(default_factory=list)
    info: dict[str, Any] = Field(default_factory=dict)


class StepResult(_Strict):
    """The result of one step: new messages (tool results, user replies), reward, done, info."""

    messages: list[Message] = Field(default_factory=list)
    reward: float = 0.0
    done: bool = False
    info: dict[str, Any] = Field(default_factory=dict)


class ResetRequest(_Strict):
    """Start an episode from a task id (from the env's task set) or an inline task spec."""

    task_id: str | None = Field(default=None, max_length=512)
    task_spec: dict[str, Any] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)

    @model_validator(mode="after")
    def _not_both(self) -> ResetRequest:
        if self.task_id is not None and self.task_spec is not None:
            raise ValueError("give task_id or task_spec, not both")
        return self


class SessionState(_Strict):
    session_id: str
    env: str
    task_id: str | None
    step_count: int
    done: bool
    total_reward: float
    created_at: float
    last_active_at: float
    state: dict[str, Any] = Field(default_factory=dict)


class Metadata(_Strict):
    name: str
    description: str
    version: str
    protocol_version: str = PROTOCOL_VERSION
    task_ids: list[str] = Field(default_factory=list)
    max_sessions: int
    idle_timeout_s: float
    auth_required: bool
    routes: list[str] = Field(default_factory=list)


class ErrorBody(_Strict):
    error: str
    detail: Any = None
