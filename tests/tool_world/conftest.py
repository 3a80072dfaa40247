"""Fixtures for tool_world tests: a tiny inline domain and a helper to run a task's gold plan."""

from __future__ import annotations

import json
import random

import pytest

from environments.tool_world.domains import parse_domain
from environments.tool_world.session import WorldSession
from environments.tool_world.spec import DomainSpec, TaskSpec
from environments.tool_world.taskgen import instantiate

LIB = {
    "name": "lib",
    "system": "You run a library.",
    "tables": {
        "books": {
            "key": "id",
            "rows": 3,
            "columns": {
                "id": {"gen": "code", "prefix": "B"},
                "reader": {"gen": "name"},
                "copies": {"gen": "int", "lo": 1, "hi": 3},
            },
        }
    },
    "tools": [
        {
            "name": "get_book",
            "params": {"id": "string"},
            "op": {"kind": "get", "table": "books", "where": {"id": "$id"}},
        },
        {"name": "list_books", "params": {}, "op": {"kind": "list", "table": "books", "show": ["id"]}},
        {
            "name": "lend",
            "params": {"id": "string", "n": "integer"},
            "op": {"kind": "update", "table": "books", "where": {"id": "$id"}, "inc": {"copies": "-$n"}},
        },
        {
            "name": "add_book",
            "params": {"reader": "string"},
            "op": {"kind": "insert", "table": "books", "set": {"reader": "$reader", "copies": 1}},
        },
        {
            "name": "drop_book",
            "params": {"id": "string"},
            "op": {"kind": "delete", "table": "books", "where": {"id": "$id"}},
        },
        {"name": "ping", "params": {"msg": "string"}, "op": {"kind": "record", "result": "pong"}},
    ],
    "templates": [
        {
            "id": "lend_one",
            "level": 1,
            "bind": {"b": "books"},
            "user": "Lend one copy of {b.id}.",
            "plan": [["lend", {"id": "{b.id}", "n": 1}]],
            "answer": "Done, {b_after.copies} left.",
            "must_say": ["{b_after.copies}"],
            "tools": ["get_book", "list_books", "add_book", "drop_book", "ping"],
        }
    ],
}


@pytest.fixture
def lib() -> DomainSpec:
    return parse_domain(LIB, "tests/tool_world/conftest.py:LIB")


@pytest.fixture
def lib_task(lib: DomainSpec) -> TaskSpec:
    return instantiate(lib, lib.templates[0], random.Random(1), split="train", task_id="lib.t0")


def run_gold(task: TaskSpec, seed: int = 0, answer: str | None = None) -> tuple[float, dict, WorldSession]:
    """Play the gold plan (retrying transient failures and partial pages) and finish with the gold answer."""
    s = WorldSession(task, seed=seed)
    for g in task.gold:
        for _ in range(3):
            r = s.call(g.name, json.dumps(g.arguments))
            if r.kind not in ("transient", "partial"):
                break
        assert r.ok, (task.id, g, r)
    reward, details = s.finish(task.answer if answer is None else answer)
    return reward, details, s
