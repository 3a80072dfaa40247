"""Domain evolution, the procedural task writer, agents and the task factory's splits."""

from __future__ import annotations

import random
from collections import Counter

from agentrl.synth.config import TasksConfig, ToolsConfig
from agentrl.synth.evolve import CATEGORIES, evolve_domains
from agentrl.synth.task_writer import write_templates
from agentrl.synth.tasks import TaskFactory, make_agents
from environments.tool_world.domains import builtin_domains
from environments.tool_world.taskgen import instantiate
from tests.tool_world.conftest import run_gold


def test_evolution_is_seeded_and_every_evolved_template_runs():
    a = evolve_domains(len(CATEGORIES), 2, random.Random(4))
    b = evolve_domains(len(CATEGORIES), 2, random.Random(4))
    assert a == b and len(a) == 2 * len(CATEGORIES)
    assert len({d.name for d in a}) == len(a) and {d.category for d in a} == set(CATEGORIES)
    rng = random.Random(0)
    levels = Counter()
    for d in a:
        assert all(t.op.kind != "record" and len(t.name) <= 16 for t in d.tools)
        templates = write_templates(d)
        assert templates, d.name
        for tpl in templates:
            levels[tpl.level] += 1
            task = instantiate(d, tpl, rng, split="heldout", task_id=tpl.id, fail_rate=0.3)
            assert run_gold(task)[0] == 1.0, (d.name, tpl.id)
    assert set(levels) == {1, 2, 3}


def test_agents_have_small_toolsets_that_solve_their_templates():
    for d in builtin_domains():
        agents = make_agents(d, d.templates, n=6, max_tools=3, rng=random.Random(1))
        assert 1 <= len(agents) <= 6 and len({a.tools for a in agents}) == len(agents)
        for a in agents:
            assert len(a.tools) <= 3 and a.templates and a.system.startswith(d.system)
            for tid in a.templates:
                tpl = next(t for t in d.templates if t.id == tid)
                assert {s.tool for s in tpl.plan} <= set(a.tools)


def test_factory_level_mix_and_split_labels():
    domains = [(d, d.templates) for d in builtin_domains()]
    factory = TaskFactory(domains, ToolsConfig(), TasksConfig(), seed=0)
    rng = random.Random(0)
    train = [factory.make("train", i, [0.6, 0.3, 0.1], rng) for i in range(600)]
    even = [factory.make("heldout", i, [1, 1, 1], rng) for i in range(600)]
    tl, el = Counter(t.level for t in train), Counter(t.level for t in even)
    assert tl[1] > 2.5 * tl[3] and abs(el[1] - el[3]) < 100  # SFT under-covers multi-step tasks; eval is even
    assert all(t.split == "heldout" and t.id.startswith("heldout.") for t in even)
    assert {t.domain for t in even} == {d.name for d, _ in domains}
    assert all(len(t.tools) <= 3 for t in train)


def test_sft_excluded_templates_only_appear_in_eval_and_rl():
    domains = [(d, d.templates) for d in builtin_domains()]
    cfg = TasksConfig(sft_excluded_templates=["shop.move*", "bank.pay"])
    factory = TaskFactory(domains, ToolsConfig(), cfg, seed=0)
    rng = random.Random(0)
    train = {
        f"{t.domain}.{t.template}" for t in (factory.make("train", i, [1, 1, 1], rng) for i in range(800))
    }
    rl = {f"{t.domain}.{t.template}" for t in (factory.make("rl", i, [1, 1, 1], rng) for i in range(800))}
    excluded = {"shop.move", "shop.move_by_user", "bank.pay"}
    assert not (train & excluded) and excluded <= rl
