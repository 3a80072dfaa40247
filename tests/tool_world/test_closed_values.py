"""The `closed` value partition: fixed pools shared by every split, enumerable for an entity-aware tokenizer."""

from __future__ import annotations

import json
import random

import pytest

from agentrl.synth.pipeline import run_synth
from environments.tool_world.domains import builtin_domains, load_domains
from environments.tool_world.spec import ColumnSpec
from environments.tool_world.taskgen import instantiate
from environments.tool_world.values import (
    POOL_SIZES,
    SPLIT_CLOSED,
    SPLIT_TRAIN,
    closed_pool,
    closed_pools,
    closed_vocabulary,
    draw,
    kind_words,
)


def test_pools_are_fixed_sized_distinct_and_per_code_prefix():
    for gen, size in POOL_SIZES.items():
        pool = closed_pool(gen, "D" if gen == "code" else "")
        assert len(pool) == len(set(pool)) == size
    assert closed_pool("name") == closed_pool.__wrapped__("name")  # same values when recomputed
    assert all(v.startswith("D") for v in closed_pool("code", "D"))
    assert not set(closed_pool("code", "D")) & set(closed_pool("code", "A"))


def test_pools_by_kind_cover_the_vocabulary_with_one_pool_per_code_prefix():
    columns = [c for d in builtin_domains() for c in d.value_columns()]
    pools = closed_pools(columns)
    assert sorted({v for pool in pools.values() for v in pool}) == closed_vocabulary(columns)
    prefixes = {c.prefix for c in columns if c.gen == "code"}
    assert {k for k in pools if k.startswith("code:")} == {f"code:{p}" for p in prefixes}
    assert pools["name"] == closed_pool("name") and len(prefixes) > 1


def test_kind_words_name_each_kind_by_its_columns_and_enums_form_their_own():
    clinic = next(d for d in builtin_domains() if d.name == "clinic")
    words = kind_words((n, c) for t in clinic.tables.values() for n, c in t.columns.items())
    assert words["name"] == ("patient", "doctor")  # both name columns, in table order
    assert words["enum:day"] == ("day", "mon", "tue", "wed", "thu", "fri")
    assert "id" not in {w for ws in words.values() for w in ws} and not any(
        k.startswith("code") for k in words
    )


def test_draw_stays_in_the_pool_honours_exclude_and_fails_loudly_when_exhausted():
    col, rng = ColumnSpec(gen="name"), random.Random(0)
    pool = set(closed_pool("name"))
    taken = set(list(pool)[:-1])
    assert draw(col, rng, SPLIT_CLOSED, taken) == (pool - taken).pop()
    with pytest.raises(RuntimeError, match="closed name pool exhausted"):
        draw(col, rng, SPLIT_CLOSED, pool)
    assert draw(ColumnSpec(gen="int", lo=3, hi=3), rng, SPLIT_CLOSED) == 3  # ints are not pooled
    open_values = {draw(col, random.Random(i), SPLIT_TRAIN) for i in range(200)}
    assert open_values - pool  # the open partitions still make up new names


def test_closed_tasks_draw_every_entity_from_the_vocabulary():
    rng = random.Random(1)
    for domain in builtin_domains():
        vocab = set(closed_vocabulary(domain.value_columns()))
        for tpl in domain.templates:
            task = instantiate(domain, tpl, rng, split=SPLIT_CLOSED, task_id=f"{domain.name}.{tpl.id}")
            for table, rows in task.state.items():
                cols = domain.tables[table].columns if table in domain.tables else {}
                for row in rows:
                    for name, value in row.items():
                        if name in cols and cols[name].gen in POOL_SIZES:
                            assert value in vocab, (task.id, name, value)


def test_synth_closed_values_share_pools_across_splits(tmp_path):
    out = tmp_path / "synth"
    run_synth(
        {"out_dir": str(out), "target": 40, "tasks": {"heldout": 20, "rl": 4, "values": "closed"}}, echo=None
    )
    domains = load_domains([out / "domains"])
    vocab = set(closed_vocabulary(c for d in domains for c in d.value_columns()))
    by_name = {d.name: d for d in domains}
    pooled = set()
    for line in (out / "tasks_heldout.jsonl").open():
        task = json.loads(line)
        tables = by_name[task["domain"]].tables
        for table, rows in task["state"].items():
            cols = tables[table].columns if table in tables else {}
            pooled |= {row[c] for row in rows for c in row if c in cols and cols[c].gen in POOL_SIZES}
    assert pooled and pooled <= vocab  # held-out states are made of pool values...
    train_text = (out / "trajectories.jsonl").read_text()
    assert sum(v in train_text for v in pooled) >= 10  # ...that training shows too (open: never)
