"""One tool_world episode: per-session state, validated tool calls, seeded stochasticity, user simulator.

K2 §3.1's tool simulator "maintains and updates state" and injects "controlled stochasticity (successes,
partial failures, edge cases)". Here:
- state is a deep copy of the task's initial tables, mutated only by successful calls;
- arguments are parsed and validated against the tool's JSON schema; malformed JSON, schema violations and
  unknown tools come back as tool-error observations (`{"error": ...}`), never as exceptions;
- a seeded RNG makes a call fail transiently ("busy, try again") with `fail_rate`, and makes `list` calls
  return a partial page with `partial_rate`. Repeating the same call right after either always succeeds, so
  the right behaviour (retry) is learnable and the final state stays reachable.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from environments.tool_world.ops import OpError, apply_op
from environments.tool_world.scoring import score_episode
from environments.tool_world.spec import TaskSpec, copy_state
from environments.tool_world.user_sim import UserSimulator, procedural_user

BUSY = "busy, try again"


def dumps(obj: Any) -> str:
    """Compact JSON: tool results are short so whole episodes fit a tiny model's context."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def safe_text(text: str) -> str:
    """Text that encodes as UTF-8: lone surrogates (valid in JSON escapes, invalid in UTF-8) become escapes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _no_constants(name: str) -> Any:
    # NaN / Infinity are not JSON; accepting them would put unserialisable values into the world state
    raise ValueError(f"{name} is not allowed in JSON")


@lru_cache(maxsize=4096)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


@dataclass
class ToolResult:
    content: str  # what the agent sees (compact JSON)
    ok: bool
    error: str | None = None
    kind: str = "ok"  # ok | transient | partial | bad_json | bad_args | unknown_tool | refused


class WorldSession:
    """Runs one task. Not thread-safe; the server keeps one per session id."""

    def __init__(self, task: TaskSpec | dict[str, Any], seed: int = 0, user: UserSimulator | None = None):
        self.task = task if isinstance(task, TaskSpec) else TaskSpec.model_validate(task)
        self.seed = seed
        self.state = copy_state(self.task.state)
        self.rng = random.Random(f"{seed}:{self.task.id}")
        self.tools = {t.name: t for t in self.task.tools}
        self.user = user or procedural_user
        self.revealed = self.task.reveal is None
        self.revealed_after_calls: int | None = None  # how many calls the agent made before the user revealed
        self.calls: list[dict[str, Any]] = []  # every attempted call with its outcome kind
        self.steps = 0
        self.done = False
        self.reward: float | None = None
        self.details: dict[str, Any] = {}
        self._last_glitch: tuple[str, str] | None = None

    # -- observation ------------------------------------------------------------------------------------
    def initial_messages(self) -> list[dict[str, Any]]:
        first = self.task.vague if (self.task.vague and not self.revealed) else self.task.user
        return [{"role": "system", "content": self.task.system}, {"role": "user", "content": first}]

    def openai_tools(self) -> list[dict[str, Any]]:
        return self.task.openai_tools()

    # -- actions ----------------------------------------------------------------------------------------
    def call(self, name: str, arguments: str | dict[str, Any] | None) -> ToolResult:
        """Execute one tool call and return its observation. Never raises on bad input."""
        result = self._call(name, arguments)
        self.calls.append({"name": name, "arguments": arguments, "kind": result.kind})
        return result

    def _call(self, name: str, arguments: str | dict[str, Any] | None) -> ToolResult:
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools))
            return self._error(f"unknown tool {safe_text(name)[:100]!r}; available: {known}", "unknown_tool")
        if isinstance(arguments, str):
            try:
                args = json.loads(arguments, parse_constant=_no_constants) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                return self._error(f"arguments are not valid JSON: {exc.msg} at char {exc.pos}", "bad_json")
            except (RecursionError, ValueError) as exc:  # absurd nesting, NaN/Infinity
                return self._error(f"arguments are not valid JSON: {str(exc)[:80]}", "bad_json")
        else:
            args = arguments if arguments is not None else {}
        if not isinstance(args, dict):
            return self._error("arguments must be a JSON object", "bad_json")
        if safe_text(dumps(args)) != dumps(args):
            return self._error("arguments contain invalid Unicode (a lone surrogate escape)", "bad_json")
        try:
            err = next(iter(_validator(dumps(tool.parameters)).iter_errors(args)), None)
        except Exception as exc:  # e.g. an unresolvable $ref: the call cannot be checked, so it is refused
            return self._error(f"cannot validate arguments: {type(exc).__name__}", "bad_args")
        if err is not None:
            where = "/".join(str(p) for p in err.path)
            return self._error(f"bad arguments{' at ' + where if where else ''}: {err.message}", "bad_args")
        signature = (name, dumps(args))
        retry = self._last_glitch == signature
        self._last_glitch = None
        if not retry and self.task.fail_rate and self.rng.random() < self.task.fail_rate:
            self._last_glitch = signature
            return ToolResult(dumps({"error": BUSY}), ok=False, error=BUSY, kind="transient")
        try:
            out = apply_op(tool.op, self.state, args, self.task.keys, self.task.prefixes, tool.name)
        except OpError as exc:
            return self._error(str(exc), "refused")
        if (
            tool.op.kind == "list"
            and not retry
            and len(out) > 1
            and self.task.partial_rate
            and self.rng.random() < self.task.partial_rate
        ):
            self._last_glitch = signature
            page = {"rows": out[:1], "partial": True, "note": "more rows; call again"}
            return ToolResult(dumps(page), ok=True, kind="partial")
        return ToolResult(dumps(out), ok=True)

    @staticmethod
    def _error(message: str, kind: str) -> ToolResult:
        return ToolResult(dumps({"error": message}), ok=False, error=message, kind=kind)

    def say(self, text: str) -> str | None:
        """The agent wrote text without tool calls. Returns the user's reply, or None if that was final."""
        reply = self.user(self.task, self, text)
        if reply is not None and not self.revealed:
            self.revealed = True
            self.revealed_after_calls = len(self.calls)
        return reply

    def finish(self, answer: str | None) -> tuple[float, dict[str, Any]]:
        """End the episode and score it (final-state check plus required outputs)."""
        self.done = True
        self.reward, self.details = score_episode(self.task, self.state, answer)
        self.details["tool_calls"] = len(self.calls)
        self.details["invalid_tool_calls"] = sum(
            c["kind"] in ("bad_json", "bad_args", "unknown_tool") for c in self.calls
        )
        return self.reward, self.details
