"""How a demonstrated reply states a value it read from a tool result (`synth.tasks.reply_style`).

Not from K2, which does not say how its synthetic replies are worded. `prose` keeps each template's sentence
("Account A1 has 583."). `quoted` writes every required output that is a column of a bound row as the tool result
prints it, key included ("Account A1 has "balance":583."): the tokens before the value are then the same in the
reply as in the tool result, so a tiny policy can copy it the way it copies an id into the next call's arguments
(an induction pattern) instead of recalling a value of the right kind from memory. Values the user gave (`{n}`,
fresh binds) and values that are not a bound row's column are left as they are.
"""

from __future__ import annotations

import json
import re

from environments.tool_world.spec import DomainSpec, TemplateSpec

_ROW_FIELD = re.compile(r"^\{(?P<var>[a-z_][a-z0-9_]*?)(?:_after)?\.(?P<col>[a-z_][a-z0-9_]*)\}$")


def quoted_reply(domain: DomainSpec, template: TemplateSpec) -> TemplateSpec:
    """`template` with each required row column in its answer written as `"column":value` (JSON, as tool results
    print it). A template without such outputs comes back unchanged."""
    answer = template.answer
    for output in template.must_say:
        match = _ROW_FIELD.match(output)
        table = template.bind.get(match["var"]) if match else None
        if not isinstance(table, str) or table not in domain.tables:
            continue
        column = domain.tables[table].columns.get(match["col"])
        if column is None:
            continue
        quote = "" if column.gen == "int" else '"'
        answer = answer.replace(output, f"{json.dumps(match['col'])}:{quote}{output}{quote}")
    return template if answer == template.answer else template.model_copy(update={"answer": answer})
