import pytest

from agentrl.errors import ConfigError
from agentrl.rewards.base import RewardResult
from agentrl.rewards.compose import ComposeConfig, RewardComposer, TaskRewardSpec
from agentrl.rewards.monitor import HackingMonitor, MonitorConfig
from agentrl.rewards.verifiers import (
    ConstraintVerifier,
    HackCheck,
    NumericMatch,
    SubprocessCodeRunner,
    UnitTestVerifier,
)
from agentrl.schemas.trajectory import Trajectory


class Fixed:
    """A reward with a fixed value (stands in for the judge, which has its own HTTP tests)."""

    def __init__(self, name, value, abstain=False):
        self.name, self.value, self.abstain = name, value, abstain

    def score(self, subject, task):
        return RewardResult.abstain("down") if self.abstain else RewardResult(value=self.value)


CFG = ComposeConfig(
    task_types={
        "math": TaskRewardSpec(
            weights={"numeric": 0.8, "judge": 0.2}, gates=["hack_check"], verifiable=["numeric"]
        ),
        "instruction": TaskRewardSpec(
            weights={"constraints": 1.0, "judge": 1.0}, gates=["hack_check"], verifiable=["constraints"]
        ),
        "code": TaskRewardSpec(weights={"unit_tests": 1.0}, gates=["hack_check"], verifiable=["unit_tests"]),
        "chat": TaskRewardSpec(weights={"self_critique": 1.0, "judge": 1.0}),
    }
)


def _composer(judge_value=0.5, abstain=False):
    return RewardComposer(
        CFG,
        {
            "numeric": NumericMatch(),
            "constraints": ConstraintVerifier(),
            "unit_tests": UnitTestVerifier(SubprocessCodeRunner(), timeout_s=5),
            "hack_check": HackCheck(),
            "judge": Fixed("judge", judge_value, abstain),
        },
    )


def _traj(task_type, answer):
    return Trajectory(
        id="t",
        task_id="q",
        task_type=task_type,
        messages=[{"role": "user", "content": "?"}, {"role": "assistant", "content": answer}],
    )


def test_weighted_sum_per_task_type():
    c = _composer(judge_value=0.5)
    r = c.score(_traj("math", "The answer is 4"), {"answer": 4})
    assert r.value == pytest.approx(0.8 * 1.0 + 0.2 * 0.5)
    assert r.details["verifiable"] == 1.0 and r.details["components"]["numeric"]["weight"] == 0.8
    wrong = c.score(_traj("math", "The answer is 5"), {"answer": 4})
    assert wrong.value == pytest.approx(0.2 * 0.5)


def test_judge_abstention_reweights_instead_of_zeroing():
    r = _composer(abstain=True).score(_traj("math", "The answer is 4"), {"answer": 4})
    assert r.value == 1.0 and r.details["components"]["judge"]["abstained"]


def test_hack_gate_zeroes_false_claims():
    c = _composer(judge_value=1.0)
    task = {"constraints": [{"type": "required_keywords", "keywords": ["capital"]}]}
    honest = c.score(_traj("instruction", "Paris is the capital."), task)
    assert honest.value == 1.0
    # Every weighted component is happy (keyword present, judge 1.0); only the false claim gives it away.
    lying = c.score(
        _traj("instruction", 'Paris is the capital. I have included the keyword "baguette".'), task
    )
    parts = lying.details["components"]
    assert parts["constraints"]["value"] == 1.0 and parts["judge"]["value"] == 1.0
    assert parts["hack_check"]["details"]["kinds"] == ["false_keyword_claim"]
    assert lying.value == 0.0


def test_test_claim_gate_uses_unit_test_evidence():
    c = _composer()
    task = {"tests": ["assert f() == 2"]}
    bad = c.score(_traj("code", "```python\ndef f(): return 1\n```\nAll tests pass."), task)
    assert bad.value == 0.0 and bad.details["components"]["unit_tests"]["value"] == 0.0
    good = c.score(_traj("code", "```python\ndef f(): return 2\n```\nAll tests pass."), task)
    assert good.value == 1.0


def test_precomputed_group_reward_and_unknown_type():
    c = _composer(judge_value=0.2)
    r = c.score(_traj("chat", "Hi."), None, precomputed={"self_critique": RewardResult(value=0.8)})
    assert r.value == pytest.approx(0.5)
    none = c.combine("chat", {"judge": RewardResult.abstain("x")})
    assert none.abstained
    with pytest.raises(ConfigError, match="no reward weights for task type 'poetry'"):
        c.score(_traj("poetry", "x"))
    with pytest.raises(ValueError):
        TaskRewardSpec(weights={"a": -1.0})


def test_monitor_flags_sharp_rise_not_steady_noise():
    m = HackingMonitor(
        MonitorConfig(window=20, baseline_window=60, min_baseline=40, rise_abs=0.2, rise_ratio=2.0)
    )
    events = []
    for i in range(200):  # steady 10% disagreement: never flagged
        events.append(m.observe("chat", 1.0, 0.0 if i % 10 == 0 else 1.0))
    assert not any(events) and m.metrics()["reward_hacking/chat/flag"] == 0.0
    assert m.metrics()["reward_hacking/chat/disagree_rate"] == pytest.approx(0.1)
    # The policy starts fooling the judge: verifier fails, judge passes, 60% of the time.
    raised = [m.observe("chat", 0.0 if i % 5 < 3 else 1.0, 1.0) for i in range(20)]
    flags = [e for e in raised if e]
    assert len(flags) == 1 and flags[0]["task_type"] == "chat"  # raised once, not every step
    met = m.metrics()
    assert met["reward_hacking/chat/flag"] == 1.0 and met["reward_hacking/chat/subjective_over_rate"] >= 0.5
    assert met["reward_hacking/chat/flags_raised"] == 1.0
    assert "reward_hacking/math/flag" not in met  # per task type


def test_composer_feeds_monitor_per_task_type():
    c = _composer(judge_value=1.0)
    for _ in range(3):
        c.score(_traj("math", "The answer is 5"), {"answer": 4})  # verifier 0, judge 1: disagreement
    met = c.monitor.metrics()
    assert met["reward_hacking/math/n"] == 3.0 and met["reward_hacking/math/disagree_rate"] == 1.0
    with pytest.raises(ValueError):
        MonitorConfig(min_baseline=500, baseline_window=100)
