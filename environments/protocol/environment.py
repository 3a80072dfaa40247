"""Server-side environment base classes.

`Environment` is the Gym-like core (reset/step/state/close) that one session owns; the HTTP server in
`app.py` creates one instance per session from a factory. `ToolEnvironment` adds the common tool-use loop:
each tool call is parsed and schema-checked by the registry, failures come back as tool error messages,
and a final answer ends the episode with a reward from `finish()` (K2's verifiable-reward RL, §3.2).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from environments.protocol.schemas import Action, Message, Observation, StepResult
from environments.protocol.tools import ToolRegistry


class EnvError(Exception):
    """A request the environment cannot serve; becomes a 4xx with this message. State must be untouched."""

    status_code: int = 400


class UnknownTaskError(EnvError):
    status_code = 404


class Environment(ABC):
    """One episode's world. Subclasses set the class attributes and implement reset/step.

    Contract: `reset` and `step` either succeed or raise `EnvError` *before* changing state. If an env
    cannot promise that for unexpected exceptions, it overrides `snapshot`/`restore`; the server snapshots
    before every step and restores if the step raises.
    """

    name: ClassVar[str] = "env"
    description: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    # True when reset/step block (subprocesses, disk): the server then runs them in a worker thread.
    blocking: ClassVar[bool] = False

    @abstractmethod
    def reset(
        self, task_id: str | None = None, task_spec: dict[str, Any] | None = None, seed: int | None = None
    ) -> Observation:
        """Start an episode. Raise UnknownTaskError / EnvError for a bad task."""

    @abstractmethod
    def step(self, action: Action) -> StepResult:
        """Apply one action."""

    def state(self) -> dict[str, Any]:
        """A JSON-able view of the world (for debugging and final-state checks)."""
        return {}

    def close(self) -> None:
        """Release resources (files, processes). Called once when the session ends."""
        return None

    def tools(self) -> ToolRegistry:
        """The tools the agent can call now (the task's tools after reset)."""
        return ToolRegistry()

    def task_ids(self) -> list[str]:
        """The built-in task ids, for /metadata."""
        return []

    def snapshot(self) -> Any:
        return None

    def restore(self, snapshot: Any) -> None:
        """Undo a failed step (see class docstring). Default: nothing to restore."""
        return None


class ToolEnvironment(Environment):
    """The tool-use loop on top of a `ToolRegistry`.

    Subclasses fill `self.registry` (in `__init__` or `reset`) and implement `finish(answer)`. Override
    `after_tools` to react to tool results (e.g. a user simulator reply, a reward for reaching a state).
    """

    max_steps: ClassVar[int] = 32

    def __init__(self) -> None:
        self.registry = ToolRegistry()
        self.steps = 0
        self.done = False

    def tools(self) -> ToolRegistry:
        return self.registry

    def step(self, action: Action) -> StepResult:
        if self.done:
            raise EnvError("episode is done; create a new session")
        self.steps += 1
        if action.final_answer is not None:
            result = self.finish(action.final_answer)
            self.done = self.done or result.done
            return result
        messages: list[Message] = []
        errors: list[dict[str, str]] = []
        for call in action.tool_calls:
            msg, err = self.registry.call(call)
            messages.append(msg)
            if err is not None:
                errors.append({"id": call.id, "name": call.name, "error": err})
        result = self.after_tools(messages, errors)
        if errors:
            result.info["tool_errors"] = errors
        if not result.done and self.steps >= self.max_steps:
            result.done = True
            result.info["truncated"] = True
        self.done = result.done
        return result

    def after_tools(self, messages: list[Message], errors: list[dict[str, str]]) -> StepResult:
        return StepResult(messages=messages)

    @abstractmethod
    def finish(self, answer: str) -> StepResult:
        """Score a final answer: return the reward, done=True (or False for a multi-turn reply)."""
