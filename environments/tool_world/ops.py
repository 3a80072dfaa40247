"""Executable semantics of declarative tools: one pure function per op kind over a per-session state.

State is `{table: [row, ...]}` (plain JSON). Lookups compare strings case-insensitively (a model that writes
"oslo" for "Oslo" still finds the row); written values are stored exactly as given, so the final-state check
stays strict. Every failure is an `OpError` whose message becomes the tool-error observation.
"""

from __future__ import annotations

from typing import Any

from environments.tool_world.spec import OpSpec, Row, State


class OpError(Exception):
    """A tool call that the world refuses (not found, overdraft, ...); reported to the agent, not raised."""


def _resolve(value: Any, args: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return args.get(value[1:])
    if isinstance(value, str) and value.startswith("-$"):  # `inc: {balance: -$amount}` subtracts
        v = args.get(value[2:])
        return -v if isinstance(v, int | float) and not isinstance(v, bool) else v
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) != isinstance(b, str):
        return str(a).strip().lower() == str(b).strip().lower()
    return a == b


def _matches(row: Row, where: dict[str, Any], args: dict[str, Any]) -> bool:
    return all(_same(row.get(col), _resolve(v, args)) for col, v in where.items())


def _project(row: Row, show: list[str]) -> Row:
    return {k: row[k] for k in show if k in row} if show else dict(row)


def _describe(where: dict[str, Any], args: dict[str, Any]) -> str:
    return ", ".join(f"{col}={_resolve(v, args)}" for col, v in where.items()) or "any"


def apply_op(
    op: OpSpec, state: State, args: dict[str, Any], keys: dict[str, str], prefixes: dict[str, str], tool: str
) -> Any:
    """Run `op` on `state` (mutated in place) and return the JSON-able result the agent sees."""
    if op.kind == "record":
        state.setdefault("_calls", []).append({"tool": tool, **args})
        return op.result if op.result is not None else {"ok": True}
    rows = state.get(op.table)
    if rows is None:
        raise OpError(f"no table {op.table!r} in this world")
    noun = op.table.rstrip("s") or op.table
    if op.kind == "get":
        for row in rows:
            if _matches(row, op.where, args):
                return _project(row, op.show)
        raise OpError(f"no {noun} with {_describe(op.where, args)}")
    if op.kind == "list":
        return [_project(r, op.show) for r in rows if _matches(r, op.where, args)]
    if op.kind == "delete":
        keep = [r for r in rows if not _matches(r, op.where, args)]
        if len(keep) == len(rows):
            raise OpError(f"no {noun} with {_describe(op.where, args)}")
        state[op.table] = keep
        return {"ok": True, "deleted": len(rows) - len(keep)}
    if op.kind == "insert":
        row = {col: _resolve(v, args) for col, v in op.set.items()}
        key = keys.get(op.table, "id")
        if row.get(key) in (None, ""):
            row[key] = f"{prefixes.get(op.table, '')}{len(rows) + 1}"
        if any(_same(r.get(key), row[key]) for r in rows):
            raise OpError(f"{noun} {row[key]} already exists")
        rows.append(row)
        return _project(row, op.show)
    # update
    hits = [r for r in rows if _matches(r, op.where, args)]
    if not hits:
        raise OpError(f"no {noun} with {_describe(op.where, args)}")
    updated = []
    for row in hits:
        new = dict(row)
        for col, v in op.set.items():
            new[col] = _resolve(v, args)
        for col, v in op.inc.items():
            delta = _resolve(v, args)
            if not isinstance(delta, int | float) or isinstance(delta, bool):
                raise OpError(f"{col}: amount must be a number")
            value = new.get(col, 0) + delta
            if value < 0:
                raise OpError(f"not enough {col}: {new.get(col, 0)} available")
            new[col] = value
        updated.append(new)
    for row, new in zip(hits, updated, strict=True):  # all checks passed: commit (a refusal changes nothing)
        row.clear()
        row.update(new)
    return _project(hits[0], op.show) if len(hits) == 1 else [_project(r, op.show) for r in hits]
