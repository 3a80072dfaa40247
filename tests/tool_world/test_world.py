"""tool_world core: declarative op semantics, argument validation, seeded stochasticity, scoring."""

from __future__ import annotations

import copy
import json

import pytest

from environments.tool_world.scoring import score_episode
from environments.tool_world.session import BUSY, WorldSession
from tests.tool_world.conftest import run_gold


def _row(session: WorldSession, i: int = 0) -> dict:
    return session.state["books"][i]


def test_get_list_update_insert_delete_record(lib_task):
    s = WorldSession(lib_task)
    b0 = dict(_row(s))
    got = json.loads(s.call("get_book", json.dumps({"id": b0["id"].lower()})).content)
    assert got == b0  # lookups are case-insensitive
    assert json.loads(s.call("list_books", "{}").content) == [{"id": r["id"]} for r in s.state["books"]]
    out = json.loads(s.call("lend", json.dumps({"id": b0["id"], "n": 1})).content)
    assert out["copies"] == b0["copies"] - 1 == _row(s)["copies"]
    new = json.loads(s.call("add_book", json.dumps({"reader": "Zed"})).content)
    assert new == {"reader": "Zed", "copies": 1, "id": "B4"} and s.state["books"][-1] == new
    assert json.loads(s.call("drop_book", '{"id": "B4"}').content) == {"ok": True, "deleted": 1}
    assert all(r["id"] != "B4" for r in s.state["books"])
    assert s.call("ping", '{"msg": "hi"}').content == '"pong"'
    assert s.state["_calls"] == [{"tool": "ping", "msg": "hi"}]


def test_refused_update_leaves_state_untouched(lib_task):
    s = WorldSession(lib_task)
    before = copy.deepcopy(s.state)
    b0 = _row(s)
    r = s.call("lend", json.dumps({"id": b0["id"], "n": 99}))
    assert not r.ok and r.kind == "refused" and "not enough copies" in r.error
    r2 = s.call("get_book", '{"id": "NOPE"}')
    assert r2.kind == "refused" and "no book with id=NOPE" in r2.error
    assert s.state == before


@pytest.mark.parametrize(
    ("name", "args", "kind", "needle"),
    [
        ("get_book", "{not json", "bad_json", "not valid JSON"),
        ("get_book", "[1, 2]", "bad_json", "must be a JSON object"),
        ("get_book", "{}", "bad_args", "'id' is a required property"),
        ("lend", '{"id": "B", "n": "two"}', "bad_args", "at n"),
        ("fly", "{}", "unknown_tool", "available: add_book, drop_book"),
        ("lend", '{"id": "B", "n": NaN}', "bad_json", "NaN is not allowed"),
        ("get_book", "[" * 100_000, "bad_json", "not valid JSON"),
        ("get_book", '{"id": "\\ud800"}', "bad_json", "invalid Unicode"),
    ],
)
def test_bad_calls_become_error_observations(lib_task, name, args, kind, needle):
    s = WorldSession(lib_task)
    before = copy.deepcopy(s.state)
    r = s.call(name, args)
    assert not r.ok and r.kind == kind and needle in r.error
    assert json.loads(r.content) == {"error": r.error}
    assert s.state == before


def test_transient_failures_are_seeded_and_a_retry_succeeds(lib_task):
    task = lib_task.model_copy(update={"fail_rate": 0.5})
    call = json.dumps({"id": task.state["books"][0]["id"]})

    def outcomes(seed: int) -> list[str]:
        s = WorldSession(task, seed=seed)
        kinds = []
        for _ in range(20):
            r = s.call("get_book", call)
            kinds.append(r.kind)
            if r.kind == "transient":
                assert r.error == BUSY
                assert s.call("get_book", call).ok  # the immediate retry never fails
        return kinds

    a, b, c = outcomes(7), outcomes(7), outcomes(8)
    assert a == b and a != c
    assert 3 <= a.count("transient") <= 17


def test_partial_results_then_full_page_on_retry(lib_task):
    task = lib_task.model_copy(update={"partial_rate": 0.9})
    s = WorldSession(task, seed=0)
    page = json.loads(s.call("list_books", "{}").content)
    for _ in range(10):
        if isinstance(page, dict):
            break
        page = json.loads(s.call("list_books", "{}").content)
    assert page["partial"] is True and len(page["rows"]) == 1
    full = json.loads(s.call("list_books", "{}").content)
    assert isinstance(full, list) and len(full) == len(task.state["books"])


def test_gold_plan_scores_one_and_wrong_episodes_score_zero(lib_task):
    reward, details, s = run_gold(lib_task)
    assert reward == 1.0 and details["state_ok"] and details["answer_ok"]
    # right state, answer without the required number
    assert score_episode(lib_task, s.state, "Done.")[0] == 0.0
    # untouched world, right answer text
    r, d = score_episode(lib_task, lib_task.state, lib_task.answer)
    assert r == 0.0 and not d["state_ok"] and d["state_diff"]
    # row order does not matter
    shuffled = {"books": list(reversed(s.state["books"]))}
    assert score_episode(lib_task.model_dump(), shuffled, lib_task.answer)[0] == 1.0


def test_partial_credit_pays_for_checkpoints_reached_and_success_stays_binary(lib_task):
    """lend_one has two checkpoints: the state change, and the copies left (which only the lend result tells)."""
    task = lib_task.model_copy(update={"partial_credit": 0.5})
    reward, details, s = run_gold(task, answer="Done.")  # did the work, fetched the number, did not say it
    assert details["progress"] == 1.0 and reward == 0.5 and not details["answer_ok"]
    r, d = score_episode(task, s.state, "Done.", evidence=task.user)  # same state, but never saw the number
    assert d["progress"] == 0.5 and r == 0.25
    r, d = score_episode(task, task.state, "Done.", evidence=task.user)  # did nothing
    assert d["progress"] == 0.0 and r == 0.0
    assert run_gold(task)[0] == 1.0  # success is still exactly 1
    # partial credit is off by default: tau-bench's binary reward
    assert run_gold(lib_task, answer="Done.")[0] == 0.0


def test_extra_write_breaks_the_state_check(lib_task):
    s = WorldSession(lib_task)
    for g in lib_task.gold:
        s.call(g.name, g.arguments)
    s.call("add_book", {"reader": "Extra"})
    reward, details = s.finish(lib_task.answer)
    assert reward == 0.0 and any("unexpected" in d for d in details["state_diff"])


def test_unresolvable_schema_ref_is_a_tool_error_not_a_crash():
    from environments.tool_world.spec import TaskSpec

    tool = {"name": "t", "parameters": {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}
    task = TaskSpec(id="x", domain="d", system="s", user="u", tools=[tool], state={}, expected_state={})
    r = WorldSession(task).call("t", '{"a": 1}')
    assert r.kind == "bad_args" and "cannot validate" in r.error
