import itertools
import json

import pytest

from agentrl.rewards.base import RewardError
from agentrl.rewards.verifiers.tool_state import FinalStateMatch
from agentrl.schemas.trajectory import Trajectory

EXPECTED = {"orders": {"o1": {"status": "refunded", "amount": 20.0}}, "refunds": ["r9"]}


def _traj(state, said="Your refund id is R9."):
    return Trajectory(
        id="t",
        task_id="retail-refund-001",
        messages=[{"role": "user", "content": "refund"}, {"role": "assistant", "content": said}],
        metadata={"final_state": state},
    )


def test_match_subset_ignores_extra_env_fields():
    actual = {
        "orders": {"o1": {"status": "refunded", "amount": 20, "sku": "x"}, "o2": {}},
        "refunds": ["r9"],
        "log": [],
    }
    r = FinalStateMatch().score(_traj(actual), {"expected_state": EXPECTED, "required_outputs": ["r9"]})
    assert r.value == 1.0, r.details


def test_wrong_value_and_missing_key():
    actual = {"orders": {"o1": {"status": "delivered", "amount": 20.0}}}
    r = FinalStateMatch().score(_traj(actual), {"expected_state": EXPECTED})
    assert r.value == 0.0
    paths = {m["path"] for m in r.details["mismatches"]}
    assert paths == {"orders.o1.status", "refunds"}
    rp = FinalStateMatch(partial_credit=True).score(_traj(actual), {"expected_state": EXPECTED})
    assert rp.value == pytest.approx(1 / 3)


def test_exact_mode_rejects_extra_keys():
    actual = {"orders": {"o1": {"status": "refunded", "amount": 20.0, "extra": 1}}, "refunds": ["r9"]}
    assert FinalStateMatch().score(_traj(actual), {"expected_state": EXPECTED}).value == 1.0
    assert FinalStateMatch(mode="exact").score(_traj(actual), {"expected_state": EXPECTED}).value == 0.0


def test_required_outputs_and_claims_do_not_count_without_state():
    good_state = {"orders": {"o1": {"status": "refunded", "amount": 20.0}}, "refunds": ["r9"]}
    task = {"expected_state": EXPECTED, "required_outputs": ["R9"]}
    assert FinalStateMatch().score(_traj(good_state, said="Done!"), task).value == 0.0
    # Hack: claiming success in words does not change the env-reported state.
    bad_state = {"orders": {"o1": {"status": "delivered", "amount": 20.0}}, "refunds": []}
    assert (
        FinalStateMatch().score(_traj(bad_state, said="I refunded order o1, refund R9."), task).value == 0.0
    )


def test_lists_ordered_unless_configured_and_bools_not_ints():
    task = {"expected_state": {"tags": ["a", "b"], "active": True}}
    swapped = {"tags": ["b", "a"], "active": True}
    assert FinalStateMatch().score(_traj(swapped), task).value == 0.0
    assert FinalStateMatch(unordered_lists=True).score(_traj(swapped), task).value == 1.0
    assert FinalStateMatch().score(_traj({"tags": ["a", "b"], "active": 1}), task).value == 0.0


def test_missing_state_abstains_and_bad_spec_raises():
    t = Trajectory(id="t", task_id="x", messages=[])
    r = FinalStateMatch().score(t, {"expected_state": EXPECTED})
    assert r.abstained and "final_state" in r.details["abstain_reason"]
    assert FinalStateMatch().score("text", {"expected_state": {"a": 1}, "final_state": {"a": 1}}).value == 1.0
    with pytest.raises(RewardError, match="mapping"):
        FinalStateMatch().score(t, {"expected_state": [1]})
    with pytest.raises(ValueError, match="mode"):
        FinalStateMatch(mode="fuzzy")


def test_agrees_with_tool_world_scoring_on_real_tasks():
    """Cross-check against the env's own tau-bench scorer on tasks from tool_world's built-in domains."""
    import copy
    import random

    tw = pytest.importorskip("environments.tool_world.taskgen")
    from environments.tool_world.domains import builtin_domains
    from environments.tool_world.scoring import score_episode

    verifier = FinalStateMatch.for_tool_world()
    checked = changed = 0
    for domain in builtin_domains():
        for i, template in enumerate(domain.templates[:3]):
            task = tw.instantiate(
                domain, template, random.Random(i), split="train", task_id=f"{domain.name}-{i}"
            )
            dumped = task.model_dump()
            said = " ".join(dumped.get("required_outputs") or dumped.get("must_say") or [])
            mutated = copy.deepcopy(task.expected_state)
            table = next(t for t, rows in mutated.items() if rows)
            row = mutated[table][0]
            col = next(iter(row))
            row[col] = "tampered"
            reversed_rows = {t: list(reversed(rows)) for t, rows in task.expected_state.items()}
            cases = [
                (task.expected_state, said),
                (reversed_rows, said),
                (mutated, said),
                (task.state, said),
                (task.expected_state, "done"),
            ]
            for (state, answer), looked_up in itertools.product(cases, (True, False)):
                # grounding: the required values reach the agent in a tool result, or only its answer has them
                told = [{"role": "tool", "content": json.dumps({"rows": said})}] if looked_up else []
                evidence = "\n".join([task.user, *(m["content"] for m in told)])
                want, _ = score_episode(task, state, answer, evidence=evidence)
                traj = Trajectory(
                    id="t",
                    task_id=task.id,
                    messages=[
                        {"role": "user", "content": task.user},
                        *told,
                        {"role": "assistant", "content": answer},
                    ],
                    metadata={"final_state": {"tables": state, "steps": 3}},
                )
                got = verifier.score(traj, dumped)
                assert got.value == want, (task.id, got.details)
                checked += 1
            changed += task.state != task.expected_state
    assert checked >= 30 and changed >= 1


def test_row_level_partial_credit():
    expected = {"accounts": [{"id": i, "bal": 10 * i} for i in range(4)]}
    actual = {
        "accounts": [{"id": 3, "bal": 30}, {"id": 2, "bal": 20}, {"id": 1, "bal": 999}, {"id": 0, "bal": 0}]
    }
    t = _traj({"tables": actual})
    r = FinalStateMatch.for_tool_world(partial_credit=True).score(t, {"expected_state": expected})
    # 4 expected rows + 1 unexpected row = 5 units; the changed row costs 2 (missing + unexpected).
    assert r.value == pytest.approx(3 / 5)
    assert FinalStateMatch.for_tool_world().score(t, {"expected_state": expected}).value == 0.0


def _with_tool_result(traj: Trajectory, content: str) -> Trajectory:
    """`traj` with one tool-result message between its user request and its reply."""
    user, reply = traj.messages
    return traj.model_copy(update={"messages": [user, {"role": "tool", "content": content}, reply]})


def test_grounded_outputs_must_reach_the_agent_before_it_says_them():
    state = {"orders": {"o1": {"status": "refunded", "amount": 20.0}}, "refunds": ["r9"]}
    task = {"expected_state": EXPECTED, "required_outputs": ["R9"], "grounded_outputs": True}
    guessed = _traj(state)  # says R9, never told it
    r = FinalStateMatch().score(guessed, task)
    assert r.value == 0.0 and r.details["ungrounded_outputs"] == ["R9"]
    assert FinalStateMatch().score(_with_tool_result(guessed, '{"refund": "r9"}'), task).value == 1.0
    # an error result does not ground anything, even if it echoes the value
    echoed = _with_tool_result(guessed, '{"error": "no refund r9"}')
    assert FinalStateMatch().score(echoed, task).value == 0.0
    assert FinalStateMatch().score(guessed, {**task, "grounded_outputs": False}).value == 1.0
