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

from typing import Any

from agentrl.synth.task_writer import table_roles
from environments.tool_world.spec import DomainSpec, Step, TemplateSpec
from environments.tool_world.taskgen import placeholders


def _finders(domain: DomainSpec) -> dict[str, str]:
    """Finder tool name -> the column it searches (task_writer's roles; a lookup on the key is a getter)."""
    return {
        tool.name: column
        for table, spec in domain.tables.items()
        for column, tool in table_roles(domain, table)["finders"].items()
        if column != spec.key
    }


def narrow_finders(domain: DomainSpec) -> DomainSpec:
    """`domain` with every finder that shows the whole row narrowed to its table's key and the searched column."""
    finders = _finders(domain)
    tools = []
    for tool in domain.tools:
        if tool.name in finders and not tool.op.show:
            show = [domain.tables[tool.op.table].key, finders[tool.name]]
            tool = tool.model_copy(update={"op": tool.op.model_copy(update={"show": show})})
        tools.append(tool)
    return domain.model_copy(update={"tools": tools})


def _fields(values: list[Any]) -> set[tuple[str, str | None]]:
    """(variable, column) of every placeholder in these strings (nested dict and list values included)."""
    out: set[tuple[str, str | None]] = set()
    for value in values:
        if isinstance(value, dict):
            out |= _fields(list(value.values()))
        elif isinstance(value, list):
            out |= _fields(value)
        elif isinstance(value, str):
            out |= set(placeholders(value))
    return out


def fetch_after_find(domain: DomainSpec, template: TemplateSpec) -> TemplateSpec | None:
    """`template` for a domain after `narrow_finders`: a getter call follows each find whose row is needed beyond
    what the narrowed finder shows. Unchanged when nothing is; None when no getter can fetch the row."""
    tools, finders = {t.name: t for t in domain.tools}, _finders(domain)
    plan: list[Step] = []
    for i, step in enumerate(template.plan):
        plan.append(step)
        if step.tool not in finders:
            continue
        op = tools[step.tool].op
        later = [template.answer, *template.must_say, *(s.args for s in template.plan[i + 1 :])]
        found = {var for var, _ in _fields([step.args]) if template.bind.get(var) == op.table}
        needed = {
            var for var, col in _fields(later) if var in found and col is not None and col not in op.show
        }
        if not needed:
            continue
        getter = table_roles(domain, op.table)["getter"]
        if getter is None or getter.op.show:  # no tool returns the whole row by id
            return None
        key = domain.tables[op.table].key
        for var in sorted(needed):
            plan.append(Step(tool=getter.name, args={getter.op.where[key][1:]: f"{{{var}.{key}}}"}))
    if len(plan) == len(template.plan):
        return template
    return template.model_copy(
        update={"plan": plan, "level": template.level + len(plan) - len(template.plan)}
    )
