"""Shared fixtures of the synth tests."""

from __future__ import annotations

import random

import pytest

from agentrl.synth.evolve import CATEGORIES, evolve_domain
from agentrl.synth.task_writer import write_templates
from environments.tool_world.spec import DomainSpec


@pytest.fixture(scope="module")
def evolved_domains() -> list[DomainSpec]:
    """One evolved domain per entity of every category, with the task writer's templates."""
    rng = random.Random(0)
    evolved = [
        evolve_domain(cat, ent, rng, i) for cat, ents in CATEGORIES.items() for i, ent in enumerate(ents)
    ]
    return [d.model_copy(update={"templates": write_templates(d)}) for d in evolved]
