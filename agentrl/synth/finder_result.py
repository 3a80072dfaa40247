"""What a finder returns (`synth.tools.finder_result`): the whole row, or only its key and the searched column.

Not from K2, which does not describe its synthetic tools' result shapes. A finder is a tool_world `get` on one
non-key column (`find_order(user)`). By default (`row`) it returns the whole row, so in a write that follows it
(`find_order` then `set_city(id, city)`) the row's *old* value sits in the context under the same key as the
argument the user's *new* value goes into, and a small policy copies the old one (BENCHMARKS.md, "Thirteenth
session": the user's value is copied 0.85 / 0.63 at seeds 0 / 1, 0.61 / 0.51 once replies quote tool results).

`key` narrows every finder to `show: [key, searched column]`, the way a search endpoint returns ids. A template whose
reply or later call needs another column of the found row as it was (`{x.city}`, not the write result's
`{x_after.city}`) then fetches that row by id with the table's getter right after the find: one call more, and its
level (the number of calls) grows by one. A template that needs such a column from a table without a getter is
dropped (None), since its answer could not be grounded in any tool result.

Measured (BENCHMARKS.md, "Fourteenth session"): without the old value in context the user's value is still not
copied reliably (teacher-forced 0.91 -> 0.52 at seed 0, 0.75 -> 0.86 at seed 1), and the demo's RL gain is not
better overall, so `row` stays the default.
"""

from __future__ import annotations

import re
from typing import Any

from environments.tool_world.spec import DomainSpec, Step, TemplateSpec, ToolSpec

_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\}")


def _searched_column(tool: ToolSpec, domain: DomainSpec) -> str | None:
    """The column a finder searches on, or None when `tool` is no finder."""
    op = tool.op
    table = domain.tables.get(op.table)
    if op.kind != "get" or table is None or len(op.where) != 1:
        return None
    column = next(iter(op.where))
    return column if column != table.key else None


def narrow_finders(domain: DomainSpec) -> DomainSpec:
    """`domain` with every finder that shows the whole row narrowed to its table's key and the searched column."""
    tools = []
    for tool in domain.tools:
        column = _searched_column(tool, domain)
        if column is not None and not tool.op.show:
            show = [domain.tables[tool.op.table].key, column]
            tool = tool.model_copy(update={"op": tool.op.model_copy(update={"show": show})})
        tools.append(tool)
    return domain.model_copy(update={"tools": tools})


def _getter(domain: DomainSpec, table: str) -> ToolSpec | None:
    key = domain.tables[table].key
    for tool in domain.tools:
        op = tool.op
        if op.kind == "get" and op.table == table and list(op.where) == [key] and not op.show:
            ref = op.where[key]
            if isinstance(ref, str) and ref.startswith("$"):
                return tool
    return None


def _fields(texts: list[Any]) -> set[tuple[str, str]]:
    """(variable, column) pairs named as `{x.col}` in these strings (nested dict and list values included)."""
    out: set[tuple[str, str]] = set()
    for text in texts:
        if isinstance(text, dict):
            out |= _fields(list(text.values()))
        elif isinstance(text, list):
            out |= _fields(text)
        elif isinstance(text, str):
            out |= set(_FIELD.findall(text))
    return out


def fetch_after_find(domain: DomainSpec, template: TemplateSpec) -> TemplateSpec | None:
    """`template` for a domain after `narrow_finders`: a getter call follows each find whose row is needed beyond
    what the narrowed finder shows. Unchanged when nothing is; None when no getter can fetch the row."""
    tools = {t.name: t for t in domain.tools}
    plan: list[Step] = []
    for i, step in enumerate(template.plan):
        plan.append(step)
        tool = tools.get(step.tool)
        if tool is None or _searched_column(tool, domain) is None:
            continue
        later = [template.answer, *template.must_say, *(s.args for s in template.plan[i + 1 :])]
        found = {var for var, _ in _fields([step.args]) if template.bind.get(var) == tool.op.table}
        needed = {(var, col) for var, col in _fields(later) if var in found and col not in tool.op.show}
        if not needed:
            continue
        getter = _getter(domain, tool.op.table)
        if getter is None:
            return None
        key = domain.tables[tool.op.table].key
        for var in sorted({var for var, _ in needed}):
            plan.append(Step(tool=getter.name, args={getter.op.where[key][1:]: f"{{{var}.{key}}}"}))
    if len(plan) == len(template.plan):
        return template
    return template.model_copy(
        update={"plan": plan, "level": template.level + len(plan) - len(template.plan)}
    )
