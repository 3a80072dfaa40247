"""Every number a task shows or asks for is one token under the demo's `tokenizer.whole_numbers=100`.

A from-scratch k2-tiny never copied a three-digit balance into a reply (0 of 9-15 held-out bank tasks in every run
before the bank domain's ranges shrank); the evolved domains keep to the same range.
"""

from __future__ import annotations

from agentrl.demo.config import DemoConfig
from environments.tool_world.server import builtin_tasks
from environments.tool_world.spec import DomainSpec, TaskSpec


def _ints(task: TaskSpec) -> list[int]:
    rows = [row for state in (task.state, task.expected_state) for table in state.values() for row in table]
    values = [v for row in rows for v in row.values()]
    values += [a for call in task.gold for a in call.arguments.values()]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _assert_whole_numbers(tasks: dict[str, TaskSpec]) -> int:
    limit = DemoConfig().tokenizer.whole_numbers
    seen = 0
    for tid, task in tasks.items():
        ints = _ints(task)
        assert all(0 <= v < limit for v in ints), f"{tid}: {sorted(v for v in ints if not 0 <= v < limit)}"
        seen += len(ints)
    return seen


def test_builtin_domains_keep_every_number_one_token():
    tasks = builtin_tasks(per_template=20, seed=3)
    assert _assert_whole_numbers(tasks) > 1000
    # a balance after a write is in the expected state
    assert any(t.domain == "bank" and t.template == "deposit" for t in tasks.values())


def test_evolved_domains_keep_every_number_one_token(evolved_domains: list[DomainSpec]):
    assert _assert_whole_numbers(builtin_tasks(per_template=5, seed=1, domains=evolved_domains)) > 100
