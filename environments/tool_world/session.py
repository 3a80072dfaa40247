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


# Exact-type acceptance tests: deliberately narrower than JSON Schema's (1.0 is a JSON-Schema integer, True
# is not); anything they do not accept goes to jsonschema, which decides and words the error.
_ACCEPT = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) is int or type(v) is float,
    "boolean": lambda v: type(v) is bool,
}


def accepts_fast(schema: Any) -> Any:
    """A quick `args -> bool` that returns True only for arguments `schema` certainly accepts, or None when
    the schema uses anything beyond flat typed/enum properties and `required` (then jsonschema always runs).

    Why: jsonschema's generic validator was ~35% of a tool_world step's CPU, and the server is CPU-bound at
    64 concurrent sessions, where every microsecond queues. Valid calls (the common case) skip it; invalid or
    unusual ones still get jsonschema's verdict and message, so results never change.
    """
    try:
        if not isinstance(schema, dict) or set(schema) - {"type", "properties", "required", "description"}:
            return None
        props, required = schema.get("properties", {}), schema.get("required", [])
        if schema.get("type") != "object" or not isinstance(props, dict) or not isinstance(required, list):
            return None
        if not all(isinstance(r, str) for r in required):
            return None
        checks = []
        for name, prop in props.items():
            if not isinstance(prop, dict) or set(prop) - {"type", "enum", "description"}:
                return None
            kind, enum = prop.get("type"), prop.get("enum")
            if (kind is not None and kind not in _ACCEPT) or (
                enum is not None and (not isinstance(enum, list) or not all(type(e) is str for e in enum))
            ):
                return None
            checks.append((name, _ACCEPT.get(kind), frozenset(enum) if enum is not None else None))
    except TypeError:  # unhashable or odd values in the schema: leave it to jsonschema
        return None

    def accept(args: dict[str, Any]) -> bool:
        for name in required:
            if name not in args:
                return False
        for name, is_type, enum in checks:
            if name in args:
                value = args[name]
                if is_type is not None and not is_type(value):
                    return False
                if enum is not None and (type(value) is not str or value not in enum):
                    return False
        return True

    return accept


@lru_cache(maxsize=4096)
def _checkers(schema_json: str) -> tuple[Any, Draft202012Validator]:
    schema = json.loads(schema_json)
    return accepts_fast(schema), Draft202012Validator(schema)


class DrawCountingRandom(random.Random):
    """`random.Random` whose state can be saved as one int: the number of `random()` draws since seeding.

    The server snapshots a session before every step; `getstate()` copies 625 ints each time. The session
    only ever calls `random()`, so replaying that many draws from the seed restores the exact state (and
    the sequence is the one `random.Random(seed)` gives, draw for draw)."""

    def __init__(self, seed: str) -> None:
        super().__init__(seed)
        self._seed_value = seed
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return super().random()

    def rewind(self, draws: int) -> None:
        """Back to the state after `draws` draws (restore after a failed step)."""
        super().seed(self._seed_value)
        for _ in range(draws):
            super().random()
        self.draws = draws


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
        self.rng = DrawCountingRandom(f"{seed}:{self.task.id}")
        self.tools = {t.name: t for t in self.task.tools}
        self._checkers: dict[str, tuple[Any, Draft202012Validator]] = {}
        self.user = user or procedural_user
        self.revealed = self.task.reveal is None
        self.revealed_after_calls: int | None = None  # how many calls the agent made before the user revealed
        self.calls: list[dict[str, Any]] = []  # every attempted call with its outcome kind
        self.steps = 0
        self.done = False
        self.reward: float | None = None
        self.details: dict[str, Any] = {}
        self._last_glitch: tuple[str, str] | None = None
        # What the agent was told (user messages, successful tool results): grounds its required outputs.
        self.evidence: list[str] = [self._first_message()]

    # -- observation ------------------------------------------------------------------------------------
    def initial_messages(self) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": self.task.system},
            {"role": "user", "content": self._first_message()},
        ]

    def _first_message(self) -> str:
        return self.task.vague if (self.task.vague and not self.revealed) else self.task.user

    def openai_tools(self) -> list[dict[str, Any]]:
        return self.task.openai_tools()

    # -- actions ----------------------------------------------------------------------------------------
    def call(self, name: str, arguments: str | dict[str, Any] | None) -> ToolResult:
        """Execute one tool call and return its observation. Never raises on bad input."""
        result = self._call(name, arguments)
        self.calls.append({"name": name, "arguments": arguments, "kind": result.kind})
        if result.ok:
            self.evidence.append(result.content)
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
        args_json = dumps(args)
        if safe_text(args_json) != args_json:
            return self._error("arguments contain invalid Unicode (a lone surrogate escape)", "bad_json")
        try:
            fast, validator = self._checkers_for(tool)
            err = None if fast is not None and fast(args) else next(iter(validator.iter_errors(args)), None)
        except Exception as exc:  # e.g. an unresolvable $ref: the call cannot be checked, so it is refused
            return self._error(f"cannot validate arguments: {type(exc).__name__}", "bad_args")
        if err is not None:
            where = "/".join(str(p) for p in err.path)
            return self._error(f"bad arguments{' at ' + where if where else ''}: {err.message}", "bad_args")
        signature = (name, args_json)
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

    def _checkers_for(self, tool: Any) -> tuple[Any, Draft202012Validator]:
        # per session: a tool's schema is serialised (the shared cache's key) once, not on every call
        found = self._checkers.get(tool.name)
        if found is None:
            found = self._checkers[tool.name] = _checkers(dumps(tool.parameters))
        return found

    @staticmethod
    def _error(message: str, kind: str) -> ToolResult:
        return ToolResult(dumps({"error": message}), ok=False, error=message, kind=kind)

    def say(self, text: str) -> str | None:
        """The agent wrote text without tool calls. Returns the user's reply, or None if that was final."""
        reply = self.user(self.task, self, text)
        if reply is not None:
            self.evidence.append(reply)
        if reply is not None and not self.revealed:
            self.revealed = True
            self.revealed_after_calls = len(self.calls)
        return reply

    def finish(self, answer: str | None) -> tuple[float, dict[str, Any]]:
        """End the episode and score it (final-state check plus required outputs)."""
        self.done = True
        self.reward, self.details = score_episode(
            self.task, self.state, answer, evidence="\n".join(self.evidence)
        )
        self.details["tool_calls"] = len(self.calls)
        self.details["invalid_tool_calls"] = sum(
            c["kind"] in ("bad_json", "bad_args", "unknown_tool") for c in self.calls
        )
        return self.reward, self.details
