"""Data model of the tool world: domains, tables, tools with declarative semantics, and task specs.

K2 §3.1 describes a "tool simulator ... functionally equivalent to a world model" that executes synthetic tools
and keeps state across calls. K2 uses an LLM for it; here a tool's *operational semantics* are data (an `OpSpec`:
get/list/insert/update/delete/record on per-session tables), so tools made by `agentrl synth` run without code
and deterministically, which makes the final-state reward verifiable (tau-bench style).

Everything here is plain pydantic so task specs travel as JSON (HTTP reset, JSONL task lists).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Row = dict[str, Any]
State = dict[str, list[Row]]

# Tool names: no dots (K2's official parser splits the id on "."), no colons (the id separator).
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")
_SIMPLE_TYPES = {"string", "integer", "number", "boolean"}


def copy_state(state: State) -> State:
    """Copy tables and rows. Ops replace values and never mutate nested ones, so row-level copies suffice
    (and are ~10x cheaper than deepcopy, which the server pays on every step's snapshot)."""
    return {table: [dict(r) for r in rows] for table, rows in state.items()}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnSpec(_Model):
    """How a column's values are generated for a task's initial state (see `values.py`)."""

    gen: Literal["code", "name", "place", "word", "enum", "int"] = "word"
    prefix: str = ""
    values: list[str] = Field(default_factory=list)
    lo: int = 1
    hi: int = 99
    unique: bool | None = None  # default: unique for code/name/place (so lookups by them are unambiguous)

    @property
    def is_unique(self) -> bool:
        return self.unique if self.unique is not None else self.gen in ("code", "name", "place")

    @model_validator(mode="after")
    def _enum_has_values(self) -> ColumnSpec:
        if self.gen == "enum" and len(self.values) < 2:
            raise ValueError("an enum column needs at least two `values`")
        return self


class TableSpec(_Model):
    key: str = "id"
    noun: str = ""  # what a row is called in user messages ("order")
    rows: int = Field(default=4, ge=1, le=50)
    columns: dict[str, ColumnSpec]

    @model_validator(mode="after")
    def _key_is_column(self) -> TableSpec:
        if self.key not in self.columns:
            raise ValueError(f"key column {self.key!r} is not among the columns {sorted(self.columns)}")
        return self


class OpSpec(_Model):
    """Declarative semantics. String values starting with `$` refer to tool arguments; others are literals.

    - get: the first row matching `where` (error if none); `show` limits the returned columns.
    - list: all rows matching `where`.
    - update: rows matching `where` get `set` (assign) and `inc` (add a number; negative to subtract);
      a change that would make a number column negative is refused with an error (e.g. overdraft).
    - insert: append a row built from `set`; the key is `prefix` + a counter when not given.
    - delete: remove rows matching `where` (error if none).
    - record: append the call to the `_calls` table and return `result` (imported tools without semantics).
    """

    kind: Literal["get", "list", "update", "insert", "delete", "record"]
    table: str = "_calls"
    where: dict[str, Any] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict)
    inc: dict[str, Any] = Field(default_factory=dict)
    show: list[str] = Field(default_factory=list)
    result: Any = None


class ToolSpec(_Model):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    op: OpSpec = Field(default_factory=lambda: OpSpec(kind="record"))
    source: str = "hand"  # hand | evolved | mcp:<server> | file:<path>

    @model_validator(mode="before")
    @classmethod
    def _short_params(cls, data: Any) -> Any:
        # Domain files may write `params: {id: string, n: integer, s: {enum: [a, b]}}`: all required.
        if isinstance(data, dict) and "params" in data:
            if "parameters" in data:
                raise ValueError("give either `params` (short form) or `parameters` (JSON schema), not both")
            data = dict(data)
            data["parameters"] = expand_params(data.pop("params"))
        return data

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"tool name {v!r} must match {NAME_RE.pattern} (no dots or colons)")
        return v

    @field_validator("parameters")
    @classmethod
    def _params_ok(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_parameters_schema(v)
        return v

    def openai(self) -> dict[str, Any]:
        """The OpenAI function-tool form the agent sees (no semantics)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def expand_params(short: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, typ in (short or {}).items():
        if isinstance(typ, str):
            props[name] = {"type": typ}
        elif isinstance(typ, dict) and "enum" in typ:
            props[name] = {"type": "string", **typ}
        elif isinstance(typ, dict):
            props[name] = dict(typ)
        else:
            raise ValueError(f"parameter {name!r}: expected a type name or a schema, got {typ!r}")
    return {"type": "object", "properties": props, "required": list(props)}


def check_parameters_schema(schema: Any) -> None:
    """A tool's parameters must be a JSON-schema object; raise ValueError naming the bad part."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        raise ValueError(f"parameters must be a JSON-schema object, got {type(schema).__name__}")
    if schema.get("type", "object") != "object":
        raise ValueError(f"parameters must have type 'object', got {schema.get('type')!r}")
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        raise ValueError("parameters.properties must be a mapping")
    req = schema.get("required", [])
    if not isinstance(req, list) or any(r not in props for r in req):
        raise ValueError(f"parameters.required {req!r} must list names from properties {sorted(props)}")
    remote = [r for r in _refs(schema) if not r.startswith("#")]
    if remote:  # a remote $ref would make validating a tool call fetch a URL
        raise ValueError(f"only local $refs ('#/...') are allowed in tool parameters, got {remote[:3]}")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.path) or "<root>"
        raise ValueError(f"invalid JSON schema at {path}: {exc.message}") from None


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


class Step(_Model):
    """One gold tool call; argument strings are templates over the task's bindings."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _pair(cls, data: Any) -> Any:
        if isinstance(data, list | tuple) and len(data) == 2:
            return {"tool": data[0], "args": data[1]}
        return data


class TemplateSpec(_Model):
    """A task family. `bind` maps a variable to a table (a random row) or a column generator (a fresh
    value); `{o.id}` / `{c}` in texts refer to them. `vague`+`reveal` make a two-turn task: the user first
    leaves the id out and gives it when the agent asks."""

    id: str
    level: int = Field(default=1, ge=1, le=5)
    bind: dict[str, str | ColumnSpec]
    user: list[str] = Field(min_length=1)
    plan: list[Step] = Field(min_length=1)
    answer: str
    must_say: list[str] = Field(default_factory=list)
    vague: list[str] = Field(default_factory=list)
    reveal: str | None = None
    tools: list[str] = Field(default_factory=list)  # extra (distractor) tools to offer; default: plan tools

    @field_validator("user", "vague", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class DomainSpec(_Model):
    name: str
    category: str = "general"
    description: str = ""
    system: str = "You are a helpful assistant. Use the tools."
    tables: dict[str, TableSpec] = Field(default_factory=dict)
    tools: list[ToolSpec]
    templates: list[TemplateSpec] = Field(default_factory=list)
    source: str = "hand"

    @model_validator(mode="after")
    def _consistent(self) -> DomainSpec:
        names = [t.name for t in self.tools]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate tool names: {sorted(dup)}")
        for tool in self.tools:
            if tool.op.kind != "record" and tool.op.table not in self.tables:
                raise ValueError(f"tool {tool.name!r}: op.table {tool.op.table!r} is not a declared table")
            props = tool.parameters.get("properties", {})
            for ref in _arg_refs(tool.op):
                if ref not in props:
                    raise ValueError(f"tool {tool.name!r}: op uses ${ref} but there is no such parameter")
        for tpl in self.templates:
            for step in tpl.plan:
                if step.tool not in names:
                    raise ValueError(f"template {tpl.id!r}: plan uses unknown tool {step.tool!r}")
            for var, target in tpl.bind.items():
                if isinstance(target, str) and target not in self.tables:
                    raise ValueError(f"template {tpl.id!r}: bind {var} -> unknown table {target!r}")
        return self

    def value_columns(self) -> list[ColumnSpec]:
        """Every column a task state or a template's fresh value is drawn from."""
        cols = [c for table in self.tables.values() for c in table.columns.values()]
        return cols + [t for tpl in self.templates for t in tpl.bind.values() if isinstance(t, ColumnSpec)]

    def tool(self, name: str) -> ToolSpec:
        for t in self.tools:
            if t.name == name:
                return t
        raise KeyError(name)


def _arg_refs(op: OpSpec) -> list[str]:
    refs = []
    for mapping in (op.where, op.set, op.inc):
        for v in mapping.values():
            if isinstance(v, str) and v.lstrip("-").startswith("$"):
                refs.append(v.lstrip("-")[1:])
    return refs


class GoldCall(_Model):
    name: str
    arguments: dict[str, Any]


class TaskSpec(_Model):
    """Everything tool_world needs to run and score one episode; self-contained (carries its tools)."""

    id: str
    domain: str
    template: str = ""
    level: int = 1
    split: str = "train"
    system: str
    user: str
    tools: list[ToolSpec]
    keys: dict[str, str] = Field(default_factory=dict)  # table -> key column
    prefixes: dict[str, str] = Field(default_factory=dict)  # table -> prefix for inserted keys
    state: State
    expected_state: State
    required_outputs: list[str] = Field(default_factory=list)  # substrings the final reply must contain
    grounded_outputs: bool = True
    """A required output counts only if the agent was told it: it appears in a user message or a successful tool
    result of the episode (scoring.score_episode). Stops a right guess from a small value pool scoring as a lookup."""
    partial_credit: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Reward of a failed episode = partial_credit x its progress through the task's checkpoints (each required output
    the agent had to fetch and did, and the final state when the task changes it); 0 = tau-bench's binary reward.
    Success is still reward 1 only (scoring.score_episode)."""
    answer: str = ""
    gold: list[GoldCall] = Field(default_factory=list)
    vague: str | None = None  # first user message when the user withholds information
    reveal: str | None = None  # the user's reply once the agent asks
    persona: str = "plain"
    fail_rate: float = Field(default=0.0, ge=0.0, le=0.9)
    partial_rate: float = Field(default=0.0, ge=0.0, le=0.9)
    max_steps: int = Field(default=8, ge=1, le=64)

    @model_validator(mode="after")
    def _unique_tools(self) -> TaskSpec:
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"task {self.id!r}: duplicate tool names {names}")
        return self

    def openai_tools(self) -> list[dict[str, Any]]:
        return [t.openai() for t in self.tools]
