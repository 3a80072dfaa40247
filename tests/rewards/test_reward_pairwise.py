import math
import random

import pytest

from agentrl.rewards.critic_prompt import build_critic_messages, parse_critic_verdict
from agentrl.rewards.pairwise import (
    Comparison,
    PairwiseConfig,
    both_orders_pairs,
    bradley_terry_strengths,
    pairwise_rewards,
    position_bias,
    win_rate,
)
from agentrl.schemas.trajectory import Trajectory

METHODS = [PairwiseConfig(method="win_rate"), PairwiseConfig(method="bradley_terry", prior_games=1.0)]


def _critic(quality, margin=0.0, bias=False):
    """Deterministic critic: the better sample wins; within `margin` it says tie, or 'A' if biased."""

    def verdict(a, b):
        d = quality[a] - quality[b]
        if abs(d) <= margin:
            return "A" if bias else "tie"
        return "A" if d > 0 else "B"

    return verdict


def _compare(k, verdict):
    return [Comparison(a, b, verdict(a, b)) for a, b in both_orders_pairs(k)]


def test_both_orders_pairs():
    pairs = both_orders_pairs(3)
    assert len(pairs) == 6 and set(pairs) == {(i, j) for i in range(3) for j in range(3) if i != j}


@pytest.mark.parametrize("cfg", METHODS, ids=lambda c: c.method)
def test_permutation_invariance(cfg):
    rng = random.Random(0)
    k = 6
    comps = [Comparison(a, b, rng.choice(["A", "B", "tie", None])) for a, b in both_orders_pairs(k)]
    base = pairwise_rewards(k, comps, cfg)
    for _ in range(5):
        perm = list(range(k))
        rng.shuffle(perm)  # sample i is renamed perm[i]; the comparison list is also shuffled
        moved = [Comparison(perm[c.a], perm[c.b], c.winner) for c in comps]
        rng.shuffle(moved)
        out = pairwise_rewards(k, moved, cfg)
        for i in range(k):
            assert out[perm[i]] == pytest.approx(base[i], abs=1e-9)


@pytest.mark.parametrize("cfg", METHODS, ids=lambda c: c.method)
def test_order_swaps_cancel_constant_position_bias(cfg):
    quality = [0.0, 0.05, 1.0, 1.02, 2.0]  # two near-ties the biased critic cannot separate
    k = len(quality)
    unbiased = pairwise_rewards(k, _compare(k, _critic(quality, margin=0.1)), cfg)
    biased_comps = _compare(k, _critic(quality, margin=0.1, bias=True))
    assert position_bias(biased_comps) > 0.5  # the bias is real ...
    biased = pairwise_rewards(k, biased_comps, cfg)
    assert biased == pytest.approx(unbiased, abs=1e-9)  # ... and both orders cancel it exactly
    # With only one order the same critic would favour whoever is shown first.
    one_order = [c for c in biased_comps if c.a < c.b]
    assert pairwise_rewards(k, one_order, cfg)[0] > pairwise_rewards(k, one_order, cfg)[1]


def test_always_a_critic_gives_equal_rewards():
    comps = [Comparison(a, b, "A") for a, b in both_orders_pairs(4)]
    for cfg in METHODS:
        assert pairwise_rewards(4, comps, cfg) == pytest.approx([0.5] * 4)


def test_bradley_terry_recovers_known_ranking():
    rng = random.Random(1)
    true = [0.2, 1.0, 3.0, 0.5, 6.0, 1.8]
    k = len(true)
    comps = []
    for _ in range(40):
        for a, b in both_orders_pairs(k):
            comps.append(Comparison(a, b, "A" if rng.random() < true[a] / (true[a] + true[b]) else "B"))
    pi = bradley_terry_strengths(k, comps, prior_games=0.5)
    assert sorted(range(k), key=pi.__getitem__) == sorted(range(k), key=true.__getitem__)
    # Ratios land near the truth (seeded sample of 1,200 games).
    est = [math.log(p / pi[0]) for p in pi]
    ref = [math.log(t / true[0]) for t in true]
    assert max(abs(e - r) for e, r in zip(est, ref, strict=True)) < 0.5
    rewards = pairwise_rewards(k, comps, PairwiseConfig(method="bradley_terry"))
    assert max(range(k), key=rewards.__getitem__) == 4 and min(range(k), key=rewards.__getitem__) == 0


def test_bradley_terry_prior_keeps_undefeated_finite():
    comps = _compare(3, _critic([0.0, 1.0, 2.0]))
    pi = bradley_terry_strengths(3, comps, prior_games=1.0)
    assert all(math.isfinite(p) and p > 0 for p in pi) and pi[2] > pi[1] > pi[0]
    no_prior = bradley_terry_strengths(3, comps, prior_games=0.0, max_iter=200)
    assert all(math.isfinite(p) for p in no_prior) and no_prior[2] > no_prior[0]


def test_win_rate_values_ties_and_abstentions():
    comps = [Comparison(0, 1, "A"), Comparison(1, 0, "tie"), Comparison(0, 2, None), Comparison(2, 0, "B")]
    assert win_rate(3, comps) == pytest.approx([2.5 / 3, 0.5 / 2, 0.0])
    assert win_rate(2, [Comparison(0, 1, None)]) == [0.5, 0.5]


@pytest.mark.parametrize(
    "bad",
    [[Comparison(0, 0, "A")], [Comparison(0, 5, "A")], [Comparison(0, 1, "C")]],  # type: ignore[arg-type]
)
def test_bad_comparisons_raise(bad):
    with pytest.raises(ValueError):
        pairwise_rewards(2, bad)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("[[A]]", "A"),
        ("Response B follows the rubric better.\n[[B]]", "B"),
        ("Earlier I thought [[A]] but on reflection [[B]]", "B"),
        ("[[ tie ]]", "tie"),
        ("[[C]]", "tie"),
        ("Verdict: A", "A"),
        ("**Winner:** Response B", "B"),
        ("B", "B"),
        (" a. ", "A"),
        ("Response A is clearly better because it is concise.", "A"),
        ("Response A is better in tone but Response B is better in accuracy.", None),
        ("Both are good.", None),
        ("I think B is better.", "B"),
        ("The answer is a matter of taste.", None),
        ("verdict: response b", None),
        ("Overall a is better choice than nothing", None),
        ("", None),
    ],
)
def test_parse_critic_verdict(text, verdict):
    assert parse_critic_verdict(text) == verdict


def test_critic_messages_layout(repo_rubrics):
    traj = Trajectory(
        id="x",
        task_id="retail-refund-001",
        messages=[
            {"role": "system", "content": "You are a shop agent."},
            {"role": "user", "content": "Refund order o1"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "get_order", "arguments": '{"id": "o1"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": '{"status": "delivered"}'},
            {"role": "assistant", "content": "Refunded, id R9."},
        ],
    )
    rubrics = repo_rubrics.for_task("retail-refund-001")
    msgs = build_critic_messages(traj, traj, "Great question! I can't.", rubrics)
    assert [m["role"] for m in msgs] == ["system", "user"]
    system, user = msgs[0]["content"], msgs[1]["content"]
    assert (
        "Clarity and Relevance" in system
        and "Initial Praise" in system
        and "task.example.refund_order" in system
    )
    assert "[[A]]" in system and "[[B]]" in system
    assert "Refund order o1" in user and "You are a shop agent." in user
    a, b = user.index("# Response A"), user.index("# Response B")
    assert a < user.index("-> call get_order") < user.index("Refunded, id R9.") < b
    assert user.index("Great question! I can't.") > b
    assert user.count("Refund order o1") == 1  # the prompt is not repeated inside the responses
