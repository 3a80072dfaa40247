"""Turn a domain's task templates into concrete, self-contained `TaskSpec`s.

For each task: draw a fresh initial state (a few rows per table, values from the task's partition, see
`values.py`), bind template variables to random rows or fresh values, render the user message, the gold plan and
the required outputs, then *execute the gold plan* on a copy of the state to get the expected final state. The
reward check therefore never relies on a hand-written diff, and a template whose plan cannot run on the drawn
state (e.g. an overdraft) is redrawn.
"""

from __future__ import annotations

import random
import re
from typing import Any

from environments.tool_world.ops import OpError, apply_op
from environments.tool_world.spec import (
    ColumnSpec,
    DomainSpec,
    GoldCall,
    State,
    TaskSpec,
    TemplateSpec,
    copy_state,
)
from environments.tool_world.user_sim import PERSONAS, request_text, reveal_text
from environments.tool_world.values import draw

_PLACEHOLDER = re.compile(r"\{(\w+)(?:\.(\w+))?\}")


def placeholders(text: str) -> list[tuple[str, str | None]]:
    """(variable, column or None) of each `{var}` / `{var.col}` in a template string, in order."""
    return [(m.group(1), m.group(2)) for m in _PLACEHOLDER.finditer(text)]


class TemplateError(ValueError):
    """A template that cannot be instantiated (unknown variable, plan that never runs)."""


def draw_state(domain: DomainSpec, rng: random.Random, split: str) -> State:
    state: State = {}
    for tname, table in domain.tables.items():
        used: dict[str, set] = {c: set() for c in table.columns}
        rows = []
        for _ in range(table.rows):
            row = {}
            for cname, col in table.columns.items():
                value = draw(col, rng, split, used[cname] if col.is_unique or cname == table.key else None)
                used[cname].add(value)
                row[cname] = value
            rows.append(row)
        state[tname] = rows
    if any(t.op.kind == "record" for t in domain.tools):
        state["_calls"] = []
    return state


def _all_values(state: State) -> set:
    return {v for rows in state.values() for r in rows for v in r.values() if isinstance(v, str | int)}


def render(text: Any, env: dict[str, Any]) -> Any:
    """Fill `{var}` / `{var.col}`; a string that is exactly one placeholder keeps the value's type."""
    if not isinstance(text, str):
        return text

    def lookup(m: re.Match) -> Any:
        var, col = m.group(1), m.group(2)
        if var not in env:
            raise TemplateError(f"unknown variable {var!r} in {text!r}")
        value = env[var]
        if col is not None:
            if not isinstance(value, dict) or col not in value:
                raise TemplateError(f"{var!r} has no column {col!r} (in {text!r})")
            value = value[col]
        return value

    whole = _PLACEHOLDER.fullmatch(text)
    if whole:
        return lookup(whole)
    return _PLACEHOLDER.sub(lambda m: str(lookup(m)), text)


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    typ = schema.get("type")
    if typ == "string" and not isinstance(value, str):
        return str(value)
    if typ == "integer" and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def instantiate(
    domain: DomainSpec,
    template: TemplateSpec,
    rng: random.Random,
    *,
    split: str,
    task_id: str,
    vague_rate: float = 0.0,
    extra_tools: int = 0,
    fail_rate: float = 0.0,
    partial_rate: float = 0.0,
    max_steps: int = 8,
    tries: int = 20,
    offer: list[str] | None = None,
    system: str | None = None,
) -> TaskSpec:
    """One concrete task from `template`; raises TemplateError if its plan fails on `tries` fresh states.

    `offer` fixes the tool names the agent sees (an agent's toolset; must include the plan's tools) and
    `system` its system prompt; by default the plan's tools plus `extra_tools` random ones, and the domain's.
    """
    last = ""
    for _ in range(tries):
        state = draw_state(domain, rng, split)
        env: dict[str, Any] = {}
        taken = _all_values(state)
        picked: dict[str, set[int]] = {}
        for var, target in template.bind.items():
            if isinstance(target, str):  # a random row, distinct from rows bound to other variables
                free = [i for i in range(len(state[target])) if i not in picked.setdefault(target, set())]
                if not free:
                    raise TemplateError(f"template {template.id!r}: table {target!r} has too few rows")
                i = rng.choice(free)
                picked[target].add(i)
                env[var] = dict(state[target][i])
            else:  # a fresh value: new names/codes are unused anywhere; enums/ints differ from bound rows
                col = ColumnSpec.model_validate(target)
                bound = {v for row in env.values() if isinstance(row, dict) for v in row.values()}
                env[var] = draw(
                    col, rng, split, taken if col.gen in ("code", "name", "place", "word") else bound
                )
                taken.add(env[var])
        gold = []
        for step in template.plan:
            props = domain.tool(step.tool).parameters.get("properties", {})
            args = {k: _coerce(render(v, env), props.get(k, {})) for k, v in step.args.items()}
            gold.append(GoldCall(name=step.tool, arguments=args))
        try:
            expected = execute_plan(domain, state, gold)
        except OpError as exc:
            last = str(exc)
            continue
        if expected == state and any(domain.tool(g.name).op.kind not in ("get", "list") for g in gold):
            last = (
                "the plan writes but leaves the state unchanged (the task would be solvable by doing nothing)"
            )
            continue
        for var, target in template.bind.items():  # `{o_after.col}`: the bound row after the gold plan
            if isinstance(target, str):
                key = domain.tables[target].key
                after = [r for r in expected.get(target, []) if r.get(key) == env[var][key]]
                env[f"{var}_after"] = after[0] if after else {}
        task = _assemble(domain, template, rng, env, state, expected, gold, split, task_id, vague_rate,
                         extra_tools, fail_rate, partial_rate, max_steps, offer)  # fmt: skip
        return task if system is None else task.model_copy(update={"system": system})
    raise TemplateError(f"template {domain.name}/{template.id}: plan failed on {tries} drawn states ({last})")


def execute_plan(domain: DomainSpec, state: State, gold: list[GoldCall]) -> State:
    """Run the gold calls on a copy of `state` (no stochasticity) and return the resulting state."""
    out = copy_state(state)
    keys = {n: t.key for n, t in domain.tables.items()}
    prefixes = {n: t.columns[t.key].prefix for n, t in domain.tables.items()}
    for call in gold:
        apply_op(domain.tool(call.name).op, out, call.arguments, keys, prefixes, call.name)
    return out


def _assemble(
    domain: DomainSpec,
    template: TemplateSpec,
    rng: random.Random,
    env: dict[str, Any],
    state: State,
    expected: State,
    gold: list[GoldCall],
    split: str,
    task_id: str,
    vague_rate: float,
    extra_tools: int,
    fail_rate: float,
    partial_rate: float,
    max_steps: int,
    offer: list[str] | None,
) -> TaskSpec:
    names = list(dict.fromkeys([s.tool for s in template.plan] + template.tools))
    if offer is not None:
        missing = [s.tool for s in template.plan if s.tool not in offer]
        if missing:
            raise TemplateError(f"template {template.id!r} needs tools {missing} that the toolset lacks")
        names = list(offer)
    else:
        others = [t.name for t in domain.tools if t.name not in names]
        names += rng.sample(others, min(extra_tools, len(others)))
    offered = [t for t in domain.tools if t.name in names]  # domain order: stable declarations
    persona = rng.choice(sorted(PERSONAS))
    vague = reveal = None
    if template.vague and template.reveal and rng.random() < vague_rate:
        vague = request_text(persona, str(render(rng.choice(template.vague), env)))
        reveal = reveal_text(persona, str(render(template.reveal, env)))
    return TaskSpec(
        id=task_id,
        domain=domain.name,
        template=template.id,
        level=template.level,
        split=split,
        system=domain.system,
        user=request_text(persona, str(render(rng.choice(template.user), env))),
        tools=offered,
        keys={n: t.key for n, t in domain.tables.items()},
        prefixes={n: t.columns[t.key].prefix for n, t in domain.tables.items()},
        state=state,
        expected_state=expected,
        required_outputs=[str(render(s, env)) for s in template.must_say],
        answer=str(render(template.answer, env)),
        gold=gold,
        vague=vague,
        reveal=reveal,
        persona=persona,
        fail_rate=fail_rate,
        partial_rate=partial_rate,
        max_steps=max_steps,
    )
