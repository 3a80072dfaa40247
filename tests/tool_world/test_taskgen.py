"""Task generation from domain templates: gold plans score 1, held-out values never appear in training."""

from __future__ import annotations

import random

import pytest

from environments.tool_world.domains import DomainError, builtin_domains, load_domain, load_domains
from environments.tool_world.session import WorldSession
from environments.tool_world.taskgen import instantiate
from environments.tool_world.values import SPLIT_HELDOUT, SPLIT_TRAIN, partition
from tests.tool_world.conftest import run_gold

DOMAINS = builtin_domains()


def test_builtin_domains_load_with_templates():
    assert {d.name for d in DOMAINS} >= {"shop", "bank", "home", "clinic"}
    assert all(d.templates for d in DOMAINS)
    assert {t.level for d in DOMAINS for t in d.templates} == {1, 2, 3}


@pytest.mark.parametrize("split", [SPLIT_TRAIN, SPLIT_HELDOUT])
def test_every_builtin_template_is_solvable_by_its_gold_plan(split):
    rng = random.Random(3)
    for d in DOMAINS:
        for t in d.templates:
            task = instantiate(
                d, t, rng, split=split, task_id=f"{d.name}.{t.id}", fail_rate=0.3, partial_rate=0.3
            )
            assert task.expected_state != task.state or all(
                d.tool(g.name).op.kind in ("get", "list") for g in task.gold
            ), f"{task.id}: a write plan must change the state"
            reward, details, _ = run_gold(task, seed=5)
            assert reward == 1.0, (task.id, details)
            assert all(s in task.answer for s in task.required_outputs)


def test_vague_tasks_reveal_the_detail_when_asked():
    shop = next(d for d in DOMAINS if d.name == "shop")
    tpl = next(t for t in shop.templates if t.id == "status")
    task = instantiate(shop, tpl, random.Random(0), split="train", task_id="v", vague_rate=1.0)
    s = WorldSession(task)
    assert s.initial_messages()[1]["content"] == task.vague and task.gold[0].arguments["id"] not in task.vague
    reply = s.say("Which order id?")
    assert task.gold[0].arguments["id"] in reply
    assert s.say("ok") is None  # only one reveal; further text is the final answer


def _string_values(task) -> set[str]:
    vals = {v for rows in task.state.values() for r in rows for v in r.values() if isinstance(v, str)}
    vals |= {v for g in task.gold for v in g.arguments.values() if isinstance(v, str)}
    enums = {"paid", "shipped", "held", "on", "off", "mon", "tue", "wed", "thu", "fri"}
    rooms = {"kitchen", "hall", "bath", "garage", "attic", "study", "porch", "den"}
    return vals - enums - rooms


def test_heldout_entity_values_never_appear_in_training_tasks():
    rng = random.Random(11)
    seen = {SPLIT_TRAIN: set(), SPLIT_HELDOUT: set()}
    for split in seen:
        for i in range(300):
            d = DOMAINS[i % len(DOMAINS)]
            t = d.templates[i % len(d.templates)]
            seen[split] |= _string_values(instantiate(d, t, rng, split=split, task_id=str(i)))
    assert len(seen[SPLIT_HELDOUT]) > 200
    assert not (seen[SPLIT_TRAIN] & seen[SPLIT_HELDOUT])
    assert all(partition(v) == SPLIT_HELDOUT for v in seen[SPLIT_HELDOUT])


def test_same_seed_same_task():
    d = DOMAINS[0]
    a = instantiate(d, d.templates[-1], random.Random(5), split="train", task_id="x")
    b = instantiate(d, d.templates[-1], random.Random(5), split="train", task_id="x")
    assert a == b


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "name: x\ntools: [{name: t, op: {kind: get, table: nope}}]\n",
            "op.table 'nope' is not a declared table",
        ),
        (
            "name: x\ntools: [{name: t, params: {id: string}, op: {kind: record}, parameters: 3}]\n",
            "parameters",
        ),
        ("name: x\ntools: [{name: bad.name}]\n", "tools.0.name"),
        (
            "name: x\ntools: [{name: t, parameters: {type: object, properties: {a: {type: strin}}}}]\n",
            "invalid JSON schema",
        ),
        (
            "name: x\ntools: [{name: t, op: {kind: record}}]\ntemplates: [{id: a, bind: {}, user: u, plan: [[zz, {}]], answer: a}]\n",
            "unknown tool 'zz'",
        ),
        ("name: x\n  tools: [\n", "malformed domain file"),
        (
            "name: x\ntools: [{name: t, parameters: {type: object, properties: {a: {$ref: 'http://h/x'}}}}]\n",
            "only local $refs",
        ),
    ],
)
def test_malformed_domain_files_name_file_and_field(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DomainError) as exc:
        load_domain(path)
    assert str(path) in str(exc.value) and needle in str(exc.value)


def test_duplicate_domain_names_are_rejected(tmp_path):
    for n in ("a", "b"):
        (tmp_path / f"{n}.yaml").write_text("name: same\ntools: [{name: t}]\n")
    with pytest.raises(DomainError, match="duplicate domain names"):
        load_domains([tmp_path])
