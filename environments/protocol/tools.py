"""One tool registry: OpenAI tool schemas, MCP tool list and argument validation come from the same specs.

K2 §3.1 synthesises tools as JSON-Schema specs and simulates their execution; vLLM's `auto` tool choice can
emit arguments that are malformed JSON or violate the schema, so every call is parsed and validated here and
failures become a *tool error message* for the model (never an HTTP error), as tau-bench/BFCL-style envs do.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from pydantic import create_model

from environments.protocol.schemas import Message, ToolCall

log = logging.getLogger(__name__)

ToolHandler = Callable[..., Any]


class ToolError(Exception):
    """Raised by a tool handler to report a failure to the agent (becomes a tool error message)."""


@dataclass
class ToolSpec:
    """A tool: name, description, JSON Schema for its arguments, and the handler called with them."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler | None = None
    annotations: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"tool name {self.name!r} must be non-empty and use letters, digits, _ - . only")
        if self.parameters.get("type", "object") != "object":
            raise ValueError(f"tool {self.name!r}: parameters must be a JSON Schema of type 'object'")
        problem = _check_schema(json.dumps(self.parameters, sort_keys=True, default=str))
        if problem:
            raise ValueError(f"tool {self.name!r}: invalid JSON Schema: {problem}")
        self._validator = _validator(json.dumps(self.parameters, sort_keys=True, default=str))

    def openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def mcp(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.parameters,
        }
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    def validate(self, args: Any) -> str | None:
        """Return a clear message naming the first schema violation, or None if `args` is valid."""
        if self._validator.is_valid(args):  # the fast path; errors are only collected for bad calls
            return None
        errors = sorted(self._validator.iter_errors(args), key=lambda e: list(e.path))
        err = errors[0]
        where = "/".join(str(p) for p in err.path) or "(root)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"invalid arguments for tool {self.name!r} at {where}: {err.message}{more}"


# Sessions re-create their tools on every reset; checking a schema against the meta-schema costs ~10 ms,
# so checks and compiled validators are cached by the schema's canonical JSON.
@functools.lru_cache(maxsize=4096)
def _check_schema(schema_json: str) -> str | None:
    try:
        Draft202012Validator.check_schema(json.loads(schema_json))
    except jsonschema.SchemaError as exc:
        return exc.message
    return None


@functools.lru_cache(maxsize=4096)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def schema_from_function(fn: Callable[..., Any]) -> dict[str, Any]:
    """Build a JSON Schema for `fn`'s keyword parameters from its type annotations (via pydantic)."""
    return copy.deepcopy(_schema_for_code(fn))


def _schema_for_code(fn: Callable[..., Any]) -> dict[str, Any]:
    # Closures re-created per session share their code object: build each schema once.
    key = (getattr(fn, "__code__", fn), repr(getattr(fn, "__defaults__", None)))
    cached = _SCHEMAS.get(key)
    if cached is None:
        cached = _SCHEMAS[key] = _build_schema(fn)
    return cached


_SCHEMAS: dict[Any, dict[str, Any]] = {}


def _build_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = p.annotation if p.annotation is not inspect.Parameter.empty else Any
        fields[name] = (ann, ... if p.default is inspect.Parameter.empty else p.default)
    schema = create_model(f"{fn.__name__}_args", **fields).model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema["additionalProperties"] = False
    return schema


class ToolRegistry:
    """An ordered set of tools; parses, validates and dispatches calls."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ToolSpec) -> ToolSpec:
        if spec.name in self._specs:
            raise ValueError(f"tool {spec.name!r} is registered twice")
        self._specs[spec.name] = spec
        return spec

    def tool(
        self,
        name: str | None = None,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> Callable[[ToolHandler], ToolHandler]:
        """Decorator: register `fn` as a tool; the schema comes from its signature unless given."""

        def deco(fn: ToolHandler) -> ToolHandler:
            self.add(
                ToolSpec(
                    name=name or fn.__name__,
                    description=description or inspect.getdoc(fn) or "",
                    parameters=parameters or schema_from_function(fn),
                    handler=fn,
                )
            )
            return fn

        return deco

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self):
        return iter(self._specs.values())

    def get(self, name: str) -> ToolSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return list(self._specs)

    def openai(self) -> list[dict[str, Any]]:
        return [s.openai() for s in self._specs.values()]

    def mcp(self) -> list[dict[str, Any]]:
        return [s.mcp() for s in self._specs.values()]

    def parse(self, call: ToolCall) -> tuple[ToolSpec, dict[str, Any]] | str:
        """Resolve and validate a call: (spec, args), or an error message for the agent."""
        spec = self._specs.get(call.name)
        if spec is None:
            avail = ", ".join(self._specs) or "none"
            return f"unknown tool {call.name!r}; available tools: {avail}"
        try:
            args = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return f"malformed JSON arguments for tool {call.name!r}: {exc.msg} at char {exc.pos}"
        except RecursionError:  # thousands of nested brackets: was an uncaught 500
            return f"JSON arguments for tool {call.name!r} are nested too deeply"
        if not isinstance(args, dict):
            return f"arguments for tool {call.name!r} must be a JSON object, got {type(args).__name__}"
        problem = spec.validate(args)
        return problem if problem else (spec, args)

    def call(self, call: ToolCall) -> tuple[Message, str | None]:
        """Run one call. Returns the tool message and the error text (None on success)."""
        parsed = self.parse(call)
        if isinstance(parsed, str):
            return tool_message(call, f"Error: {parsed}"), parsed
        spec, args = parsed
        if spec.handler is None:
            err = f"tool {spec.name!r} has no handler in this environment"
            return tool_message(call, f"Error: {err}"), err
        try:
            result = spec.handler(**args)
        except ToolError as exc:
            return tool_message(call, f"Error: {exc}"), str(exc)
        except Exception as exc:  # a bug in a tool must not take the server down; the agent sees an error
            log.exception("tool %s raised", spec.name)
            err = f"internal error in tool {spec.name!r}: {type(exc).__name__}: {exc}"
            return tool_message(call, f"Error: {err}"), err
        return tool_message(
            call, result if isinstance(result, str) else json.dumps(result, default=str)
        ), None


def tool_message(call: ToolCall, content: str) -> Message:
    return Message(role="tool", tool_call_id=call.id, name=call.name, content=content)
