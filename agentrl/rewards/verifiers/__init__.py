"""Verifiable rewards (K2 §3.2.1): each class has `score(subject, task) -> RewardResult`."""

from agentrl.rewards.verifiers.answer import AnswerMatch, ExactMatch, NumericMatch
from agentrl.rewards.verifiers.code import CodeRunner, ExecResult, SubprocessCodeRunner, UnitTestVerifier
from agentrl.rewards.verifiers.constraints import ConstraintVerifier
from agentrl.rewards.verifiers.env_reward import EnvRewardVerifier
from agentrl.rewards.verifiers.hack_check import HackCheck
from agentrl.rewards.verifiers.tool_state import FinalStateMatch

__all__ = [
    "AnswerMatch",
    "CodeRunner",
    "ConstraintVerifier",
    "EnvRewardVerifier",
    "ExactMatch",
    "ExecResult",
    "FinalStateMatch",
    "HackCheck",
    "NumericMatch",
    "SubprocessCodeRunner",
    "UnitTestVerifier",
]
