import pytest

from agentrl.rewards.reward_fn import StackRewardFn
from agentrl.rewards.stack import RewardsConfig, RewardStack
from agentrl.rewards.verifiers import SubprocessCodeRunner
from agentrl.schemas.trajectory import Trajectory

TASKS = {f"m{g}": {"id": f"m{g}", "answer": g * 10} for g in range(12)}


def _math_group(g: int) -> list[Trajectory]:
    answers = [g * 10, g * 10 + 1, g * 10, g * 10 + 2]  # samples 0 and 2 right, 1 and 3 wrong
    return [
        Trajectory(
            id=f"m{g}-{i}",
            task_id=f"m{g}",
            task_type="math",
            group_id=f"gm{g}",
            messages=[
                {"role": "user", "content": f"What is {g} * 10?"},
                {"role": "assistant", "content": f"The answer is {a}"},
            ],
        )
        for i, a in enumerate(answers)
    ]


def oracle(batch):
    out = []
    for m in batch:
        user = m[1]["content"]
        q = int(user.split("What is ")[1].split(" *")[0])
        a = user.split("# Response A")[1].split("# Response B")[0]
        out.append("[[A]]" if f"The answer is {q * 10}\n" in a + "\n" else "[[B]]")
    return out


def test_reward_fn_scores_groups_and_collects_critic_data():
    stack = RewardStack(RewardsConfig(), code_runner=SubprocessCodeRunner())
    fn = StackRewardFn(stack, tasks=TASKS, critic_fn=oracle, holdout_fraction=0.3, critic_eval_every=1)
    trajs = [t for g in range(12) for t in _math_group(g)]
    trajs = trajs[1::2] + trajs[0::2]  # interleaved input order must not matter
    out = fn(trajs)
    assert out.rewards == [1.0 if t.id.endswith(("-0", "-2")) else 0.0 for t in trajs]
    assert out.success == [r == 1.0 for r in out.rewards]
    assert all(
        t.reward == r and t.reward_details["verifiable"] == r for t, r in zip(trajs, out.rewards, strict=True)
    )
    # Each group has 2 right x 2 wrong = 4 differing pairs -> 8 ordered examples; split by group.
    train, held = fn.drain_critic_examples(), fn.critic_heldout
    assert len(train) + len(held) == 12 * 8 and train and held
    assert not {e.group_id for e in train} & {e.group_id for e in held}
    assert all((e.reward_a > e.reward_b) == (e.target == "A") for e in train + held)
    assert fn.drain_critic_examples() == []
    assert out.metrics["critic/heldout/accuracy"] == 1.0 and out.metrics["critic/heldout/n"] == len(held)
    assert out.metrics["rewards/abstained"] == 0.0 and out.judge_tokens == 0


def test_biased_critic_shows_chance_accuracy_and_tasks_from_metadata():
    stack = RewardStack(RewardsConfig(), code_runner=SubprocessCodeRunner())
    fn = StackRewardFn(
        stack, critic_fn=lambda b: ["[[A]]"] * len(b), holdout_fraction=1.0, critic_eval_every=1
    )
    trajs = _math_group(3)
    for t in trajs:
        t.metadata["task"] = TASKS["m3"]
    out = fn(trajs)
    assert out.metrics["critic/heldout/accuracy"] == pytest.approx(0.5)
    assert out.metrics["critic/heldout/order_consistency"] == 0.0
