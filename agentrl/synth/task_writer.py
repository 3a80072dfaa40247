"""The procedural task writer: task templates (simple to multi-step) derived from a domain's tool semantics.

K2 §3.1 generates, per agent, tasks "ranging from simple to complex operations", each with a rubric. Because a
tool's semantics are data (tool_world ops), the writer can read what each tool does (getter, finder, setter,
action, remover, or an imported tool that only records the call) and compose templates whose arguments are copied
from the user message (level 1) or from a previous tool result (levels 2–3: a finder's row id feeds the next
call). Hand-written domains keep their own templates.
"""

from __future__ import annotations

from typing import Any

from environments.tool_world.spec import ColumnSpec, DomainSpec, TemplateSpec, ToolSpec


def _param(v: Any) -> str | None:
    return v[1:] if isinstance(v, str) and v.startswith("$") else None


def table_roles(domain: DomainSpec, table: str) -> dict[str, Any]:
    """What each tool on `table` does: `getter` (get by key), `finders` (column -> get on that one column),
    `setters` (column -> update from an argument), `actions` (name -> (tool, column, literal)), `remover`."""
    key = domain.tables[table].key
    r: dict[str, Any] = {"getter": None, "finders": {}, "setters": {}, "actions": {}, "remover": None}
    for t in domain.tools:
        op = t.op
        if op.table != table or op.kind == "record":
            continue
        by_key = list(op.where) == [key] and _param(op.where[key]) is not None
        if op.kind == "get" and by_key:
            r["getter"] = r["getter"] or t
        elif op.kind == "get" and len(op.where) == 1:
            col = next(iter(op.where))
            r["finders"].setdefault(col, t)
        elif op.kind == "update" and by_key and len(op.set) == 1 and not op.inc:
            col, val = next(iter(op.set.items()))
            if _param(val) is not None:
                r["setters"].setdefault(col, t)
            else:
                r["actions"][t.name] = (t, col, val)
        elif op.kind == "delete" and by_key:
            r["remover"] = r["remover"] or t
    return r


def _verb(tool: ToolSpec) -> str:
    return tool.name.split("_")[0]


def _tpl(**kw: Any) -> TemplateSpec:
    return TemplateSpec.model_validate(kw)


def templates_for_table(domain: DomainSpec, table: str) -> list[TemplateSpec]:
    spec = domain.tables[table]
    n, k = spec.noun or table.rstrip("s"), spec.key
    r = table_roles(domain, table)
    out: list[TemplateSpec] = []
    g = r["getter"]
    finder_col, finder = next(iter(r["finders"].items()), (None, None))
    attrs = [c for c in spec.columns if c not in (k, finder_col)]
    if g is not None:
        for a in attrs[:2]:
            out.append(_tpl(id=f"ask_{a}", level=1, bind={"x": table},
                            user=[f"What is the {a} of {n} {{x.{k}}}?"], vague=[f"What is the {a} of my {n}?"],
                            reveal=f"{{x.{k}}}", plan=[[g.name, {_param(g.op.where[k]): f"{{x.{k}}}"}]],
                            answer=f"The {a} of {n} {{x.{k}}} is {{x.{a}}}.", must_say=[f"{{x.{a}}}"]))  # fmt: skip
    if finder is not None and attrs:
        a, fp = attrs[0], _param(finder.op.where[finder_col])
        out.append(_tpl(id=f"ask_{a}_by_{finder_col}", level=1, bind={"x": table},
                        user=[f"What is the {a} of the {n} of {{x.{finder_col}}}?"],
                        plan=[[finder.name, {fp: f"{{x.{finder_col}}}"}]],
                        answer=f"It is {{x.{a}}}.", must_say=[f"{{x.{a}}}"]))  # fmt: skip
    writes: list[tuple[str, ToolSpec, dict[str, Any], dict[str, Any], str, str]] = []
    # (id, tool, extra bind, args, phrase with {x.id}, answer) for each single-call write on one row
    for col, t in r["setters"].items():
        fresh = ColumnSpec.model_validate(spec.columns[col].model_dump()).model_dump(exclude_defaults=True)
        args = {_param(t.op.where[k]): f"{{x.{k}}}", _param(t.op.set[col]): "{v}"}
        writes.append((f"set_{col}", t, {"v": fresh}, args, f"set the {col} of {n} {{x.{k}}} to {{v}}",
                       f"The {col} of {n} {{x.{k}}} is now {{v}}."))  # fmt: skip
    for t, _col, val in r["actions"].values():
        writes.append((t.name, t, {}, {_param(t.op.where[k]): f"{{x.{k}}}"}, f"{_verb(t)} {n} {{x.{k}}}",
                       f"{n.capitalize()} {{x.{k}}} is {val}."))  # fmt: skip
    if r["remover"] is not None:
        t = r["remover"]
        writes.append((t.name, t, {}, {_param(t.op.where[k]): f"{{x.{k}}}"}, f"delete {n} {{x.{k}}}",
                       f"{n.capitalize()} {{x.{k}}} is deleted."))  # fmt: skip
    for wid, t, extra, args, phrase, answer in writes:
        out.append(_tpl(id=wid, level=1, bind={"x": table, **extra}, user=[f"Please {phrase}."],
                        vague=[f"Please {phrase.replace(f'{n} {{x.{k}}}', f'my {n}')}."], reveal=f"{{x.{k}}}",
                        plan=[[t.name, args]], answer=answer))  # fmt: skip
    if finder is None:
        return out
    fp = _param(finder.op.where[finder_col])
    find_step = [finder.name, {fp: f"{{x.{finder_col}}}"}]
    by_owner = [
        (w, phrase.replace(f"{n} {{x.{k}}}", f"the {n} of {{x.{finder_col}}}"))
        for w in writes
        for phrase in [w[4]]
    ]
    for (wid, t, extra, args, _, answer), phrase in by_owner:
        out.append(_tpl(id=f"{wid}_by_{finder_col}", level=2, bind={"x": table, **extra},
                        user=[f"Please {phrase}."], plan=[find_step, [t.name, args]], answer=answer))  # fmt: skip
    if len(writes) >= 2:  # level 3: find a row, then two writes on it
        (w1, t1, e1, a1, _, ans1), p1 = by_owner[0]
        w2, t2, e2, a2, p2, ans2 = writes[1]

        def with_w(text: str) -> str:  # the second write's fresh value is w (v is the first's)
            return text.replace("{v}", "{w}")

        # On the found row, not a second row named by id: the found row would show its own id under the key the
        # second write needs, and a tiny policy copies that instead (BENCHMARKS.md, "Twentieth session").
        a2w = {key: with_w(val) if isinstance(val, str) else val for key, val in a2.items()}
        e2w = {("w" if var == "v" else var): col for var, col in e2.items()}
        p2w = with_w(p2).replace(f"{n} {{x.{k}}}", f"that {n}")
        out.append(_tpl(id=f"{w1}_and_{w2}", level=3, bind={"x": table, **e1, **e2w},
                        user=[f"Please {p1} and {p2w}."], plan=[find_step, [t1.name, a1], [t2.name, a2w]],
                        answer=f"{ans1} {with_w(ans2)}"))  # fmt: skip
    return out


_SIMPLE = {"string": {"gen": "word"}, "integer": {"gen": "int", "lo": 1, "hi": 99}, "number": {"gen": "int"}}


def templates_for_recorded(domain: DomainSpec, max_params: int = 3) -> list[TemplateSpec]:
    """Imported tools have no semantics: the task is to call the tool with the values the user gives."""
    out: list[TemplateSpec] = []
    for t in domain.tools:
        if t.op.kind != "record":
            continue
        props = t.parameters.get("properties", {})
        req = [p for p in t.parameters.get("required", []) if p in props]
        bind: dict[str, Any] = {}
        for i, p in enumerate(req):
            schema = props[p] if isinstance(props[p], dict) else {}
            if (
                schema.get("enum")
                and all(isinstance(e, str) for e in schema["enum"])
                and len(schema["enum"]) >= 2
            ):
                bind[f"v{i}"] = {"gen": "enum", "values": schema["enum"]}
            elif schema.get("type") in _SIMPLE:
                bind[f"v{i}"] = _SIMPLE[schema["type"]]
            else:
                break  # objects, arrays, booleans: no procedural value; skip the tool for tasks
        else:
            if len(req) > max_params:
                continue
            given = " and ".join(f"{p} {{v{i}}}" for i, p in enumerate(req))
            user = f"Use {t.name} with {given}." if req else f"Use {t.name}."
            out.append(_tpl(id=f"call_{t.name}", level=1, bind=bind, user=[user],
                            plan=[[t.name, {p: f"{{v{i}}}" for i, p in enumerate(req)}]], answer="Done."))  # fmt: skip
    return out


def write_templates(domain: DomainSpec) -> list[TemplateSpec]:
    """The domain's own templates if it has any, else templates derived from its tools."""
    if domain.templates:
        return list(domain.templates)
    out: list[TemplateSpec] = []
    for table in domain.tables:
        out += templates_for_table(domain, table)
    return out + templates_for_recorded(domain)
