import pytest

from agentrl.config.loader import load_config
from agentrl.errors import ConfigError
from agentrl.rewards.stack import RewardsConfig, RewardStack, summarize
from agentrl.rewards.verifiers import SubprocessCodeRunner
from agentrl.schemas.trajectory import Trajectory


def _t(i, task_type, answer, task_id="q", **meta):
    return Trajectory(
        id=f"s{i}",
        task_id=task_id,
        task_type=task_type,
        group_id="g",
        messages=[{"role": "user", "content": "Question?"}, {"role": "assistant", "content": answer}],
        metadata=meta,
    )


def prefer_paris(batch):
    out = []
    for m in batch:
        user = m[1]["content"]
        a = user.split("# Response A")[1].split("# Response B")[0]
        b = user.split("# Response B")[1]
        out.append(
            "[[A]]"
            if "Paris" in a and "Paris" not in b
            else "[[B]]"
            if "Paris" in b and "Paris" not in a
            else "[[A]]"
        )
    return out


@pytest.fixture
def stack(fake_openai_server, request):
    cfg = load_config(
        RewardsConfig,
        overrides=[
            f"judge.base_url={fake_openai_server[0]}",
            f"judge.model=good:{request.node.name}",
            "judge.price_per_mtok_in=1.0",
            "self_critique.pairwise.method=win_rate",
        ],
    )
    s = RewardStack(cfg, critic_fn=prefer_paris, code_runner=SubprocessCodeRunner())
    yield s
    s.close()


def test_chat_group_uses_critic_and_judge(stack):
    group = [_t(0, "chat", "Paris."), _t(1, "chat", "Lyon."), _t(2, "chat", "Paris, of course.")]
    res = stack.score_group(group, {"prompt": "Capital of France?"})
    # judge (fake server) gives 0.8 to all; critic: the two Paris answers beat Lyon and tie each other.
    crit = [r.details["components"]["self_critique"]["value"] for r in res]
    assert crit == pytest.approx([0.75, 0.0, 0.75])
    assert [r.value for r in res] == pytest.approx(
        [(0.75 + 0.5 * 0.8) / 1.5, (0 + 0.4) / 1.5, (0.75 + 0.4) / 1.5]
    )
    m = stack.metrics()
    assert (
        m["judge/scored"] == 3
        and m["judge/prompt_tokens"] == 300
        and m["judge/cost_usd"] == pytest.approx(3e-4)
    )
    assert m["critic/groups"] == 1 and 0 <= m["critic/position_a_rate"] <= 1


def test_verifiable_groups_and_summary(stack):
    code = [
        _t(0, "code", "```python\ndef f(): return 2\n```"),
        _t(1, "code", "```python\ndef f(): return 3\n```\nAll tests pass."),
    ]
    res = stack.score_group(code, {"tests": ["assert f() == 2"]})
    assert [r.details["verifiable"] for r in res] == [1.0, 0.0]
    assert res[0].value == pytest.approx((1.0 + 0.1 * 0.8) / 1.1)
    assert res[1].value == 0.0  # failed tests and a false "all tests pass" claim
    state = {"tables": {"t": [{"id": 1}]}}
    tool = [
        _t(0, "tool_use", "Done: R9", final_state=state),
        _t(1, "tool_use", "Done", final_state={"tables": {"t": []}}),
    ]
    res += stack.score_group(tool, {"expected_state": {"t": [{"id": 1}]}, "must_say": ["R9"]})
    summary = summarize(res)
    assert summary["n"] == 4 and summary["success_rate"] == 0.5
    assert summary["judge_mean"] == pytest.approx(0.8) and summary["judge_abstained"] == 0
    assert summary["unit_tests_mean"] == 0.5 and summary["tool_state_mean"] == 0.5
    m = stack.metrics()
    assert m["reward_hacking/code/n"] == 2 and m["reward_hacking/code/disagree_rate"] == 0.5


def test_config_errors():
    with pytest.raises(ConfigError, match="code_env_url"):
        RewardStack(RewardsConfig.model_validate({"verifiers": {"code_runner": "env_http"}}))
    bad = {"compose": {"task_types": {"chat": {"weights": {"vibes": 1.0}}}}}
    with pytest.raises(ConfigError, match="unknown rewards: \\['vibes'\\]"):
        RewardStack(RewardsConfig.model_validate(bad))
    with pytest.raises(ConfigError, match="no reward weights for task type 'poetry'"):
        RewardStack(RewardsConfig(), code_runner=SubprocessCodeRunner()).score_group([_t(0, "poetry", "x")])
    with pytest.raises(ConfigError, match="judge.modle"):
        load_config(RewardsConfig, overrides=["judge.modle=x"])


def test_rewards_import_without_torch():
    """The rewards stack stays torch-free (it runs next to env servers and in eval workers)."""
    import subprocess
    import sys

    code = (
        "import sys; import agentrl.rewards.stack, agentrl.rewards.critic_data, agentrl.rewards.verifiers.code_env; "
        "bad = [m for m in ('torch', 'transformers', 'vllm') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
