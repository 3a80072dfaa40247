import pytest

from agentrl.rewards.critic_data import (
    build_critic_examples,
    critic_accuracy,
    evaluate_critic,
    split_by_group,
)
from agentrl.rewards.critic_prompt import parse_critic_verdict
from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus


def _t(tid, group, answer, reward, status=TrajectoryStatus.ok, key="verifiable"):
    details = {key: reward} if key == "verifiable" else {}
    return Trajectory(
        id=tid,
        task_id=f"task-{group}",
        group_id=group,
        messages=[
            {"role": "user", "content": f"Question {group}?"},
            {"role": "assistant", "content": answer},
        ],
        reward_details=details,
        env_reward=reward if key == "env" else None,
        status=status,
    )


ROLLOUTS = [
    _t("g1-a", "g1", "right 1", 1.0),
    _t("g1-b", "g1", "wrong 1", 0.0),
    _t("g1-c", "g1", "also right 1", 1.0),
    _t("g1-d", "g1", "crashed", 0.0, status=TrajectoryStatus.failed),
    _t("g2-a", "g2", "half 2", 0.5, key="env"),
    _t("g2-b", "g2", "full 2", 1.0, key="env"),
    _t("g3-a", "g3", "same", 1.0),
    _t("g3-b", "g3", "same too", 1.0),
]


def test_labels_are_correct(repo_rubrics):
    exs = build_critic_examples(ROLLOUTS, repo_rubrics)
    # g1: (a,b) and (c,b) differ -> 2 pairs; a-c tie skipped; failed d skipped. g2: 1 pair. g3: none.
    assert len(exs) == 6
    by_order = {(e.a_id, e.b_id): e.target for e in exs}
    assert by_order == {
        ("g1-a", "g1-b"): "A",
        ("g1-b", "g1-a"): "B",
        ("g1-b", "g1-c"): "B",
        ("g1-c", "g1-b"): "A",
        ("g2-a", "g2-b"): "B",
        ("g2-b", "g2-a"): "A",
    }
    for e in exs:
        # The label always points at the sample with the higher verifiable reward ...
        assert (e.reward_a > e.reward_b) == (e.target == "A")
        user = e.messages[1]["content"]
        # ... and that sample's text really sits under the labelled heading.
        better_text = {"g1-a": "right 1", "g1-c": "also right 1", "g2-b": "full 2"}[
            e.a_id if e.target == "A" else e.b_id
        ]
        heading = f"# Response {e.target}\n[assistant]\n{better_text}"
        assert heading in user
    rec = exs[0].sft_record()
    assert rec["messages"][-1] == {"role": "assistant", "content": "[[A]]"}
    assert parse_critic_verdict(rec["messages"][-1]["content"]) == "A"


def test_margin_and_pair_cap(repo_rubrics):
    assert len(build_critic_examples(ROLLOUTS, repo_rubrics, min_margin=0.6)) == 4  # g2's 0.5 gap dropped
    capped = build_critic_examples(ROLLOUTS, repo_rubrics, max_pairs_per_group=1)
    assert len(capped) == 4 and len({e.pair_key for e in capped}) == 2


def test_split_by_group_never_splits_a_group(repo_rubrics):
    many = [_t(f"{g}-{i}", f"grp{g}", f"ans {i}", float(i)) for g in range(40) for i in range(2)]
    exs = build_critic_examples(many, repo_rubrics)
    train, held = split_by_group(exs, 0.25, seed=3)
    assert train and held and len(train) + len(held) == len(exs)
    assert not {e.group_id for e in train} & {e.group_id for e in held}
    assert split_by_group(exs, 0.25, seed=3) == (train, held)  # stable
    with pytest.raises(ValueError):
        split_by_group(exs, 1.5)


def test_accuracy_on_known_fixture():
    truth = ["A", "B", "A", "B", "A", "B", "A", "B"]
    pairs = ["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"]
    pred = [
        "A",
        "B",  # p1: right in both orders
        "A",
        "A",  # p2: position-biased: one right, inconsistent
        "B",
        "A",  # p3: consistently picks the worse sample
        "Some reasoning... [[A]]",
        None,  # p4: right once (raw text parsed), then abstained
    ]
    acc = critic_accuracy(pred, truth, pairs)
    assert (acc.n, acc.correct, acc.abstained, acc.ties) == (8, 4, 1, 0)
    assert acc.accuracy == pytest.approx(0.5)
    assert acc.decided_accuracy == pytest.approx(4 / 7)
    assert acc.pair_accuracy == pytest.approx(1 / 4)
    assert acc.order_consistency == pytest.approx(2 / 4)  # p1 and p3
    m = acc.metrics()
    assert m["critic/heldout/accuracy"] == 0.5 and m["critic/heldout/abstained"] == 1.0
    perfect = critic_accuracy(truth, truth, pairs)
    assert perfect.accuracy == 1.0 and perfect.pair_accuracy == 1.0 and perfect.order_consistency == 1.0
    always_a = critic_accuracy(["A"] * 8, truth, pairs)
    assert always_a.accuracy == 0.5 and always_a.order_consistency == 0.0  # chance, and visibly biased
    ties = critic_accuracy(["tie", "B"], ["A", "B"])
    assert ties.ties == 1 and ties.accuracy == 0.5 and ties.pair_accuracy is None
    with pytest.raises(ValueError):
        critic_accuracy(["A"], ["A", "B"])


def test_evaluate_critic_with_an_oracle_and_a_biased_critic(repo_rubrics):
    exs = build_critic_examples(ROLLOUTS, repo_rubrics)

    def oracle(batch):  # picks the response whose text starts with right/also right/full
        out = []
        for m in batch:
            user = m[1]["content"]
            a = user.split("# Response A")[1].split("# Response B")[0]
            out.append("[[A]]" if any(w in a for w in ("right", "full")) else "[[B]]")
        return out

    assert evaluate_critic(oracle, exs).accuracy == 1.0
    biased = evaluate_critic(lambda batch: ["[[A]]"] * len(batch), exs)
    assert biased.accuracy == 0.5 and biased.pair_accuracy == 0.0


def test_training_prompts_match_rl_time_critic_prompts(repo_rubrics):
    """The critic is trained on exactly the prompts it sees when it scores a group during RL."""
    from agentrl.rewards.self_critique import SelfCritiqueReward

    group = [t for t in ROLLOUTS if t.group_id == "g2"]
    seen = []

    def capture(batch):
        seen.extend(batch)
        return ["[[A]]"] * len(batch)

    SelfCritiqueReward(capture, repo_rubrics).score_group(group, {"prompt": "ignored for trajectories"})
    exs = build_critic_examples(group, repo_rubrics)
    assert len(exs) == 2 and all(ex.messages in seen for ex in exs)


def test_demo_critic_prompt_keeps_the_user_request(repo_rubrics):
    """The compact demo prompt clips the conversation to 300 characters from both ends: a long agent system prompt
    is what gets cut, never the user's request at the end (the values the verdict depends on)."""
    from agentrl.demo.config import DemoCriticConfig

    request = "Set the mode of robot BJFT to idle."
    messages = [
        {"role": "system", "content": "You manage robots. Use the tools. " * 20},
        {"role": "user", "content": request},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "set_mode", "arguments": "{}"}}],
        },
    ]
    sample = Trajectory(id="a", task_id="t", messages=messages)
    cfg = DemoCriticConfig().prompt
    user = build_critic_examples(
        [sample, sample.model_copy(update={"id": "b", "env_reward": 0.0})], repo_rubrics
    )
    assert user == []  # no reward on either: no example
    a = sample.model_copy(update={"env_reward": 1.0})
    b = sample.model_copy(update={"id": "b", "env_reward": 0.0})
    examples = build_critic_examples([a, b], repo_rubrics, prompt=cfg)
    assert len(examples) == 2
    for ex in examples:
        conversation = ex.messages[1]["content"].split("# Response A")[0]
        assert request in conversation and "characters omitted" in conversation
