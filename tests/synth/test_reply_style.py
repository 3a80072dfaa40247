"""`synth.tasks.reply_style=quoted`: a reply states a looked-up value exactly as a tool result printed it."""

from __future__ import annotations

import json
import random
import re

from agentrl.synth.evolve import CATEGORIES, evolve_domains
from agentrl.synth.reply_style import quoted_reply
from agentrl.synth.task_writer import write_templates
from environments.tool_world.domains import builtin_domains
from environments.tool_world.session import WorldSession
from environments.tool_world.taskgen import instantiate


def quoted_fields(text: str) -> list[str]:
    """The `"key":value` fragments of a reply, as a tool result prints them."""
    return re.findall(r'"[a-z_]+":(?:"[^"]*"|\d+)', text)


def _template(domain_name: str, template_id: str):
    domain = next(d for d in builtin_domains() if d.name == domain_name)
    return domain, next(t for t in domain.templates if t.id == template_id)


def test_int_and_string_columns_are_quoted_as_json_prints_them():
    bank, balance = _template("bank", "balance")
    assert quoted_reply(bank, balance).answer == 'Account {a.id} has "balance":{a.balance}.'
    shop, status = _template("shop", "status")
    assert quoted_reply(shop, status).answer == 'Order {o.id} is "status":"{o.status}".'
    _, pay = _template("bank", "pay")  # `{b_after.balance}` is row b's column too; `{n}` came from the user
    pay = pay.model_copy(
        update={
            "answer": "Sent {n} to {b.owner}. Account {b.id} now has {b_after.balance}.",
            "must_say": ["{b_after.balance}", "{n}"],
        }
    )
    assert (
        quoted_reply(bank, pay).answer
        == 'Sent {n} to {b.owner}. Account {b.id} now has "balance":{b_after.balance}.'
    )


def test_templates_without_looked_up_outputs_are_unchanged():
    shop, move = _template("shop", "move")  # the city is the user's, not a row's
    assert quoted_reply(shop, move) is move
    _, cancel = _template("shop", "cancel")
    assert quoted_reply(shop, cancel) is cancel


def test_every_quoted_output_appears_verbatim_in_a_gold_tool_result():
    """The point of the style: the reply's key-and-value tokens occur in the context the policy copies from."""
    domains = builtin_domains() + evolve_domains(len(CATEGORIES), 2, random.Random(4))
    rng, quoted = random.Random(0), 0
    for domain in domains:
        for template in write_templates(domain):
            styled = quoted_reply(domain, template)
            task = instantiate(domain, styled, rng, split="heldout", task_id=template.id)
            session = WorldSession(task, seed=0)
            results = [session.call(g.name, json.dumps(g.arguments)).content for g in task.gold]
            for fragment in quoted_fields(task.answer):
                assert any(fragment in r for r in results), (domain.name, template.id, fragment, results)
                quoted += 1
            assert session.finish(task.answer)[0] == 1.0, (domain.name, template.id)
    assert quoted >= 20
