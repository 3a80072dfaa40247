"""Import real tool specs: JSON-schema function files (OpenAI, BFCL) and MCP servers (tools/list).

K2 §3.1 fetched 3000+ real MCP tools from GitHub. Imported tools have interfaces but no semantics, so tool_world
runs them with the `record` op: the call is logged in the session's `_calls` table (what the final-state check
compares) and acknowledged. Names are made parser-safe (K2's tool-call id is `functions.{name}:{idx}` and the
reference parser splits on "."), and BFCL's Python-flavoured types (`dict`, `float`, `tuple`, `any`) are mapped to
JSON Schema. A malformed record fails with `ToolImportError` naming the file, line/record and tool.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agentrl.errors import AgentRLError
from agentrl.synth.config import McpServerConfig
from environments.tool_world.spec import DomainSpec, ToolSpec

_BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array", "list": "array", "int": "integer",
               "str": "string", "bool": "boolean", "double": "number", "long": "integer"}  # fmt: skip
MAX_DESCRIPTION = 160  # imported descriptions can be essays; the tiny policy's context is ~384 tokens


class ToolImportError(AgentRLError):
    """A tool spec file or MCP server could not be imported; the message names the record or server."""


def safe_name(name: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_\-]", "_", name.strip())[:64]
    return out if out and not out[0].isdigit() else f"t_{out}"[:64]


def normalize_schema(schema: Any) -> Any:
    """Map BFCL-style types to JSON Schema, recursively; drop `type: any`."""
    if isinstance(schema, list):
        return [normalize_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "title":  # pydantic-generated noise; costs context, tells the model nothing
            continue
        if k == "type" and isinstance(v, str):
            if v == "any":
                continue
            out[k] = _BFCL_TYPES.get(v, v)
        elif k in ("properties", "$defs", "definitions") and isinstance(v, dict):
            out[k] = {name: normalize_schema(s) for name, s in v.items()}
        elif k in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "not"):
            out[k] = normalize_schema(v)
        else:
            out[k] = v
    return out


def _functions(record: Any) -> list[dict[str, Any]]:
    """The function docs in one record: OpenAI tool, bare function, or a BFCL entry with `function: [...]`."""
    if (
        isinstance(record, dict)
        and record.get("type") == "function"
        and isinstance(record.get("function"), dict)
    ):
        return [record["function"]]
    if isinstance(record, dict) and "function" in record and "name" not in record:
        fn = record["function"]
        return fn if isinstance(fn, list) else [fn]
    if isinstance(record, dict) and isinstance(record.get("tools") or record.get("functions"), list):
        return [f for r in (record.get("tools") or record.get("functions")) for f in _functions(r)]
    return [record]


def tool_from_function(fn: Any, source: str) -> ToolSpec:
    if not isinstance(fn, dict):
        raise ValueError(f"expected a function object, got {type(fn).__name__}")
    if not isinstance(fn.get("name"), str) or not fn["name"].strip():
        raise ValueError("missing or empty `name`")
    params = normalize_schema(
        fn.get("parameters", fn.get("input_schema", {"type": "object", "properties": {}}))
    )
    if isinstance(params, dict):
        params = {"type": "object", **params} if "type" not in params else params
    desc = " ".join(str(fn.get("description") or "").split())[:MAX_DESCRIPTION]
    return ToolSpec.model_validate(
        {"name": safe_name(fn["name"]), "description": desc, "parameters": params, "op": {"kind": "record"},
         "source": source}
    )  # fmt: skip


def _records(path: Path) -> list[tuple[str, Any]]:
    """(location, record) pairs from a JSON or JSONL file; a broken line names its line number."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ToolImportError(f"cannot read function file {path}: {exc.strerror}") from None
    if path.suffix == ".jsonl":
        out = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append((f"{path}:{i}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ToolImportError(
                    f"{path}:{i}: broken JSONL line: {exc.msg} at column {exc.colno}"
                ) from None
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolImportError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    items = data if isinstance(data, list) else [data]
    return [(f"{path} record {i}", r) for i, r in enumerate(items)]


def import_function_file(path: str | Path) -> list[ToolSpec]:
    path = Path(path)
    tools: dict[str, ToolSpec] = {}
    for where, record in _records(path):
        for j, fn in enumerate(_functions(record)):
            label = fn.get("name") if isinstance(fn, dict) else None
            try:
                tool = tool_from_function(fn, f"file:{path.name}")
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                msg = str(exc).splitlines()
                detail = "; ".join(m.strip() for m in msg[1:3]) if len(msg) > 1 else msg[0]
                raise ToolImportError(
                    f"{where} function {j} ({label or '?'}): malformed tool schema: {detail}"
                ) from None
            tools.setdefault(tool.name, tool)
    if not tools:
        raise ToolImportError(f"{path}: no function definitions found")
    return list(tools.values())


async def _list_mcp_tools(cfg: McpServerConfig) -> list[Any]:
    import anyio
    from mcp.client import Client
    from mcp.client.stdio import StdioServerParameters

    target: Any = cfg.url or StdioServerParameters(command=cfg.command, args=cfg.args, env=cfg.env or None)
    tools: list[Any] = []
    with anyio.fail_after(cfg.timeout_s):
        async with Client(target, read_timeout_seconds=cfg.timeout_s) as client:
            cursor = None
            for _ in range(100):  # pagination, bounded
                page = await client.list_tools(cursor=cursor)
                tools += page.tools
                cursor = page.next_cursor
                if cursor is None:
                    break
    return tools


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) task-group exception groups."""
    while getattr(exc, "exceptions", None):  # ExceptionGroup (3.11+ builtin, backport on 3.10)
        exc = exc.exceptions[0]
    return exc


def import_mcp_server(cfg: McpServerConfig) -> list[ToolSpec]:
    """tools/list from one MCP server (stdio command or streamable-HTTP URL), with a hard timeout."""
    import anyio

    where = cfg.url or " ".join([cfg.command or "", *cfg.args])
    try:
        raw = anyio.run(_list_mcp_tools, cfg)
    except TimeoutError:
        raise ToolImportError(
            f"MCP server {cfg.name!r} ({where}): no tools/list answer in {cfg.timeout_s:g}s"
        ) from None
    except Exception as exc:  # spawn failures, protocol errors, HTTP errors: all name the server
        leaf = _leaf(exc)
        raise ToolImportError(f"MCP server {cfg.name!r} ({where}): {type(leaf).__name__}: {leaf}") from None
    out = []
    for t in raw:
        fn = {"name": t.name, "description": t.description or "", "parameters": t.input_schema}
        try:
            out.append(tool_from_function(fn, f"mcp:{cfg.name}"))
        except ValueError as exc:
            raise ToolImportError(
                f"MCP server {cfg.name!r}: tool {t.name!r}: malformed tool schema: {exc}"
            ) from None
    return out


def imported_domain(name: str, tools: list[ToolSpec], description: str) -> DomainSpec:
    """Wrap imported tools as a tool_world domain (no tables; every tool records its call)."""
    seen: dict[str, ToolSpec] = {}
    for t in tools:
        seen.setdefault(t.name, t)
    return DomainSpec(
        name=safe_name(name),
        category="imported",
        description=description,
        system="You are an assistant with tools. Use them.",
        tools=list(seen.values()),
        source="imported",
    )
