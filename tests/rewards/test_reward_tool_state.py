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
