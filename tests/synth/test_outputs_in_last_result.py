"""Every value a task's reply must state, and the user did not give, is in the gold plan's last tool result.

Domain design for a from-scratch policy (environments/tool_world/domains/): it copies a reply's value from the
latest result (an induction pattern), not from a result further back under the same key. `bank.pay` once asked
for the payer's balance, which the withdrawal two results back shows while the last result shows the payee's; the
default never answered it (0 of 9 held-out tasks at seed 0, BENCHMARKS.md, "Twenty-second session").
"""

from __future__ import annotations

from environments.tool_world.scoring import answer_missing
from environments.tool_world.server import builtin_tasks
from environments.tool_world.session import WorldSession
from environments.tool_world.spec import DomainSpec, TaskSpec


def _outputs_not_in_last_result(tasks: dict[str, TaskSpec]) -> tuple[dict[str, list[str]], int]:
    """(task id -> fetched outputs missing from the last result, tasks with a fetched output at all)."""
    bad: dict[str, list[str]] = {}
    checked = 0
    for tid, task in tasks.items():
        session = WorldSession(task.model_copy(update={"fail_rate": 0.0, "partial_rate": 0.0}))
        results = [session.call(call.name, call.arguments) for call in task.gold]
        assert all(r.ok for r in results), (tid, [r.content for r in results])
        fetched = answer_missing(task.required_outputs, f"{task.user}\n{task.reveal or ''}")
        checked += bool(fetched)
        missing = answer_missing(fetched, results[-1].content if results else "")
        if missing:
            bad[tid] = missing
    return bad, checked


def test_builtin_replies_copy_from_the_last_result():
    bad, checked = _outputs_not_in_last_result(builtin_tasks(per_template=5, seed=3))
    assert bad == {}
    assert checked >= 20  # the questions (`balance`, `status`, `when`, ...) are checked, not only writes


def test_evolved_replies_copy_from_the_last_result(evolved_domains: list[DomainSpec]):
    bad, checked = _outputs_not_in_last_result(builtin_tasks(per_template=3, seed=1, domains=evolved_domains))
    assert bad == {}
    assert checked >= 20
