"""Agents (system prompt + sampled toolset) and tasks with rubrics; train / held-out / RL splits.

K2 §3.1: "thousands of distinct agents" are made by pairing synthesised system prompts with tool combinations
sampled from the repository, and every agent gets tasks "from simple to complex" with an explicit rubric. Here an
agent's toolset is seeded with one template's tools and filled up with other tools of its domain (distractors);
its tasks are the templates its toolset can solve. Splits:
- train: entity values from the train partition, the SFT level mix (multi-step tasks under-covered);
- heldout: values from the held-out partition (never seen in training), an even level mix;
- rl: train-partition values, fresh tasks, an even level mix.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass
from typing import Any

from agentrl.synth.config import TasksConfig, ToolsConfig
from environments.tool_world.spec import DomainSpec, TaskSpec, TemplateSpec
from environments.tool_world.taskgen import TemplateError, instantiate
from environments.tool_world.values import SPLIT_CLOSED, SPLIT_HELDOUT, SPLIT_TRAIN

SYSTEM_STYLES = ("", " Be brief.", " Reply in one short sentence.")


@dataclass(frozen=True)
class Agent:
    id: str
    domain: str
    system: str
    tools: tuple[str, ...]
    templates: tuple[str, ...]  # ids of the templates this toolset can solve


def make_agents(
    domain: DomainSpec, templates: list[TemplateSpec], n: int, max_tools: int, rng: random.Random
) -> list[Agent]:
    """Up to `n` distinct agents for a domain; every agent can solve at least one template."""
    names = [t.name for t in domain.tools]
    agents: dict[tuple[str, ...], Agent] = {}
    for i in range(n * 4):
        if len(agents) >= n or not templates:
            break
        seed_tpl = templates[i % len(templates)] if i < len(templates) else rng.choice(templates)
        need = list(dict.fromkeys(s.tool for s in seed_tpl.plan))
        if len(need) > max_tools:
            continue
        others = [x for x in names if x not in need]
        rng.shuffle(others)
        chosen = set(need + others[: rng.randint(0, max(0, max_tools - len(need)))])
        toolset = tuple(x for x in names if x in chosen)  # domain order
        if toolset in agents:
            continue
        solvable = tuple(t.id for t in templates if all(s.tool in chosen for s in t.plan))
        system = domain.system + rng.choice(SYSTEM_STYLES)
        agents[toolset] = Agent(f"{domain.name}.a{len(agents)}", domain.name, system, toolset, solvable)
    return list(agents.values())


class TaskFactory:
    """Draws concrete tasks: level (by weight) -> domain -> agent -> template -> instantiate."""

    def __init__(
        self,
        domains: list[tuple[DomainSpec, list[TemplateSpec]]],
        tools: ToolsConfig,
        tasks: TasksConfig,
        seed: int,
    ):
        self.cfg = tasks
        rng = random.Random(f"{seed}:agents")
        self.domains = {d.name: d for d, _ in domains}
        self.templates = {d.name: {t.id: t for t in tpls} for d, tpls in domains}
        self.agents: dict[str, list[Agent]] = {}
        for d, tpls in domains:
            if tpls:
                self.agents[d.name] = make_agents(
                    d, tpls, tools.agents_per_domain, tools.max_tools_per_agent, rng
                )
        # level -> [(domain, agent, template id)]
        self.by_level: dict[int, list[tuple[str, Agent, str]]] = {}
        for dname, agents in self.agents.items():
            for a in agents:
                for tid in a.templates:
                    level = self.templates[dname][tid].level
                    self.by_level.setdefault(level, []).append((dname, a, tid))
        if not self.by_level:
            raise TemplateError("no domain has any usable task template (check the tool sources)")

    def levels(self) -> list[int]:
        return sorted(self.by_level)

    def make(self, split: str, index: int, weights: list[float], rng: random.Random) -> TaskSpec:
        levels = [lv for lv in self.levels() if lv <= len(weights) and weights[lv - 1] > 0] or self.levels()
        level = rng.choices(
            levels, weights=[weights[lv - 1] if lv <= len(weights) else 1.0 for lv in levels]
        )[0]
        options = self.by_level[level]
        if split == "train" and self.cfg.sft_excluded_templates:
            kept = [o for o in options if not _excluded(f"{o[0]}.{o[2]}", self.cfg.sft_excluded_templates)]
            options = kept or options  # a level with only excluded templates keeps them
        dname = rng.choice(sorted({o[0] for o in options}))  # balance domains, not templates
        dname, agent, tid = rng.choice([o for o in options if o[0] == dname])
        c = self.cfg
        if c.values == "closed":
            partition = SPLIT_CLOSED
        else:
            partition = SPLIT_HELDOUT if split == SPLIT_HELDOUT else SPLIT_TRAIN
        task = instantiate(
            self.domains[dname], self.templates[dname][tid], rng, split=partition,
            task_id=f"{split}.{index:06d}.{dname}.{tid}", vague_rate=c.vague_rate, fail_rate=c.fail_rate,
            partial_rate=c.partial_rate, max_steps=c.max_steps, offer=list(agent.tools), system=agent.system,
        )  # fmt: skip
        return task.model_copy(update={"split": split})


def _excluded(name: str, globs: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def eval_task_lists(factory: TaskFactory, cfg: TasksConfig, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Held-out and RL task specs (JSON dicts that tool_world can reset with), deterministic in `seed`."""
    out: dict[str, list[dict[str, Any]]] = {}
    for split, n in (("heldout", cfg.heldout), ("rl", cfg.rl)):
        rng = random.Random(f"{seed}:{split}")
        out[split] = [
            factory.make(split, i, cfg.eval_level_weights, rng).model_dump(mode="json") for i in range(n)
        ]
    return out


def rubric_for(domain: DomainSpec, tpl: TemplateSpec) -> dict[str, Any]:
    """A task rubric in the `rubrics/tasks/` schema (agentrl.rewards.rubrics.Rubric)."""
    steps = [f"Calls {s.tool} with {', '.join(s.args) or 'no arguments'}" for s in tpl.plan]
    criteria = [
        "The final state of the world equals the state the gold plan produces (no missing or extra writes)."
    ]
    if tpl.must_say:
        criteria.append(
            "The final reply tells the user the requested value(s) exactly as the tools returned them."
        )
    checkpoints = steps + ["Repeats a call that failed with 'busy, try again' or returned a partial page."]
    if tpl.vague:
        checkpoints.append("Asks the user for the missing id before acting when the request leaves it out.")
    return {
        "id": f"task.tool_world.{domain.name}.{tpl.id}",
        "name": f"{domain.name}: {tpl.id.replace('_', ' ')}",
        "kind": "task",
        "weight": 1.0,
        "mandatory": False,
        "description": (
            f"Level-{tpl.level} {domain.category} task. Example request: {tpl.user[0]!r}. The agent uses only the "
            "offered tools, copies ids and values exactly from the user or from earlier tool results, and ends with "
            "a short reply that states the outcome."
        ),
        "success_criteria": criteria,
        "checkpoints": checkpoints,
        "expected_tool_pattern": [s.tool for s in tpl.plan],
        "task_ids": [f"*.{domain.name}.{tpl.id}"],
    }
