"""Synthetic tools by hierarchical domain evolution (K2 §3.1): categories -> domains -> tools.

K2 evolves "multiple specific application domains" from key categories with an LLM and then synthesises tools
with "clear interfaces, descriptions, and operational semantics" per domain. The procedural tool designer does
the same from a small vocabulary, seeded: pick categories, evolve each into domains (an entity with an owner
and a sampled subset of attributes and actions), then emit tools whose semantics are tool_world ops, so every
synthetic tool is executable. Names stay short (`get_flight`, `set_seat`) because the default policy is tiny.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from environments.tool_world.spec import DomainSpec


@dataclass(frozen=True)
class Entity:
    noun: str
    prefix: str
    owner: str  # a unique name column, so "the flight of Tomi" is unambiguous
    attrs: dict[str, dict[str, Any]]  # column -> ColumnSpec fields
    actions: dict[str, tuple[str, str]] = field(default_factory=dict)  # verb -> (column, literal value)


def _enum(*values: str) -> dict[str, Any]:
    return {"gen": "enum", "values": list(values)}


PLACE = {"gen": "place"}
CATEGORIES: dict[str, list[Entity]] = {
    "travel": [
        Entity("flight", "F", "passenger", {"seat": {"gen": "int", "lo": 1, "hi": 40}, "status": _enum("booked", "boarding", "landed")},
               {"cancel": ("status", "cancelled")}),
        Entity("trip", "T", "traveler", {"city": PLACE, "status": _enum("planned", "active")}, {"end": ("status", "done")}),
    ],
    "gaming": [
        Entity("player", "G", "nick", {"level": {"gen": "int", "lo": 1, "hi": 60}, "team": _enum("red", "blue", "green")},
               {"ban": ("status", "banned")}),
        Entity("match", "M", "host", {"map": PLACE, "status": _enum("open", "full")}, {"close": ("status", "closed")}),
    ],
    "education": [
        Entity("course", "C", "teacher", {"room": {"gen": "int", "lo": 10, "hi": 99}, "status": _enum("open", "full")},
               {"close": ("status", "closed")}),
        Entity("student", "S", "name", {"grade": _enum("a", "b", "c", "d"), "city": PLACE}, {"expel": ("status", "gone")}),
    ],
    "logistics": [
        Entity("parcel", "K", "sender", {"city": PLACE, "status": _enum("packed", "sent", "stuck")},
               {"return": ("status", "returned")}),
        Entity("truck", "R", "driver", {"depot": PLACE, "load": {"gen": "int", "lo": 1, "hi": 20}}, {"park": ("status", "parked")}),
    ],
    "support": [
        Entity("ticket", "Q", "client", {"status": _enum("open", "waiting"), "agent": {"gen": "name", "unique": False}},
               {"close": ("status", "closed")}),
    ],
    "robotics": [
        Entity("robot", "B", "owner", {"zone": PLACE, "speed": {"gen": "int", "lo": 1, "hi": 9}, "mode": _enum("idle", "busy")},
               {"stop": ("mode", "stopped")}),
    ],
    "legal": [
        Entity("case", "L", "client", {"court": PLACE, "status": _enum("filed", "heard")}, {"settle": ("status", "settled")}),
    ],
    "events": [
        Entity("event", "E", "host", {"venue": PLACE, "seats": {"gen": "int", "lo": 10, "hi": 90}}, {"cancel": ("status", "cancelled")}),
    ],
}  # fmt: skip


def evolve_domain(category: str, entity: Entity, rng: random.Random, index: int = 0) -> DomainSpec:
    """One domain: the entity's table with a sampled attribute subset, plus its tools (all executable)."""
    names = sorted(entity.attrs)
    keep = sorted(rng.sample(names, k=max(1, min(len(names), rng.choice((1, 2, 2, 3))))))
    columns: dict[str, Any] = {"id": {"gen": "code", "prefix": entity.prefix}, entity.owner: {"gen": "name"}}
    columns.update({c: entity.attrs[c] for c in keep})
    n = entity.noun
    tools: list[dict[str, Any]] = [
        {"name": f"get_{n}", "description": f"Get a {n} by id.", "params": {"id": "string"},
         "op": {"kind": "get", "table": f"{n}s", "where": {"id": "$id"}}},
        {"name": f"find_{n}", "description": f"Find the {n} of a {entity.owner}.", "params": {entity.owner: "string"},
         "op": {"kind": "get", "table": f"{n}s", "where": {entity.owner: f"${entity.owner}"}}},
    ]  # fmt: skip
    for col in keep:
        spec = entity.attrs[col]
        if spec.get("gen") == "enum":
            param: Any = {"enum": spec["values"]}
        else:
            param = "integer" if spec.get("gen") == "int" else "string"
        tools.append({"name": f"set_{col}", "description": f"Set the {col} of a {n}.", "params": {"id": "string", col: param},
                      "op": {"kind": "update", "table": f"{n}s", "where": {"id": "$id"}, "set": {col: f"${col}"},
                             "show": ["id", col]}})  # fmt: skip
    for verb, (col, value) in entity.actions.items():
        if col not in columns:  # the action's column joins the table so the action has state to change
            columns[col] = {"gen": "enum", "values": ["new", "ok"]}
        tools.append({"name": f"{verb}_{n}", "description": f"{verb.capitalize()} a {n}.", "params": {"id": "string"},
                      "op": {"kind": "update", "table": f"{n}s", "where": {"id": "$id"}, "set": {col: value},
                             "show": ["id", col]}})  # fmt: skip
    if rng.random() < 0.5:
        tools.append({"name": f"drop_{n}", "description": f"Delete a {n}.", "params": {"id": "string"},
                      "op": {"kind": "delete", "table": f"{n}s", "where": {"id": "$id"}}})  # fmt: skip
    data = {
        "name": f"{category.replace(' ', '_')}_{n}{index or ''}",
        "category": category,
        "description": f"{n.capitalize()}s in {category}.",
        "system": f"You manage {n}s. Use the tools.",
        "tables": {f"{n}s": {"key": "id", "noun": n, "rows": 4, "columns": columns}},
        "tools": [{**t, "source": "evolved"} for t in tools],
        "source": "evolved",
    }
    return DomainSpec.model_validate(data)


def evolve_domains(categories: int, per_category: int, rng: random.Random) -> list[DomainSpec]:
    """Pick `categories` categories and evolve `per_category` domains in each (distinct entities first)."""
    chosen = rng.sample(sorted(CATEGORIES), k=min(categories, len(CATEGORIES)))
    out: list[DomainSpec] = []
    for cat in chosen:
        entities = list(CATEGORIES[cat])
        rng.shuffle(entities)
        for i in range(per_category):
            ent = entities[i % len(entities)]
            out.append(evolve_domain(cat, ent, rng, index=i // len(entities)))
    return out
