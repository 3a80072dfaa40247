"""Policy output is adversarial input: verifiers must not crash or backtrack catastrophically on it.

No timing assertions (see the guide): a regex that backtracks turns these into hangs that the suite's timeout
catches. Before the fixes, "words 'a' " x 3k took minutes (cubic), and 20k spaces after "verdict:" or
"answer is" took about a minute each (quadratic).
"""

import pytest

from agentrl.rewards.judge import VerdictError, parse_verdict
from agentrl.rewards.verifiers import ConstraintVerifier, ExactMatch, HackCheck, NumericMatch

N = 30_000
CONSTRAINTS = {
    "constraints": [
        {"type": "no_commas"},
        {"type": "word_count", "max": 5},
        {"type": "json_format"},
        {"type": "required_keywords", "keywords": ["zzz"]},
        {"type": "bullet_count", "max": 1},
    ]
}


@pytest.mark.parametrize(
    "unit",
    [
        "words 'a' ",
        'I have included "x" and ',
        "I under 5 words ",
        "the tests ",
        "answer  ",
        "[",
        "9",
        "1,",
        "\\boxed{",
    ],
)
def test_long_adversarial_responses(unit):
    text = unit * (N // len(unit))
    assert 0.0 <= HackCheck().score(text, CONSTRAINTS).value <= 1.0
    assert ConstraintVerifier().score(text, CONSTRAINTS).value == 0.0
    assert NumericMatch().score(text, {"answer": 1}).value in (0.0, 1.0)
    assert ExactMatch().score(text, {"answer": "a"}).value == 0.0
    with pytest.raises(VerdictError):
        parse_verdict(text, ["a"])


@pytest.mark.parametrize(
    "text",
    [
        "verdict:" + " " * N + "x",
        "answer is" + " " * N + "\n",
        "\n" * N + "x",
        " \n" * N,
        "```" + " " * N,
        "```json" + " " * N + "x",
        "#### " + " " * N + "\n",
    ],
)
def test_long_whitespace_runs(text):
    from agentrl.rewards.critic_prompt import parse_critic_verdict

    assert parse_critic_verdict(text) is None
    assert NumericMatch().score(text, {"answer": 1}).value == 0.0
    assert ConstraintVerifier().score(text, CONSTRAINTS).value == 0.0
    assert HackCheck().score(text, CONSTRAINTS).value == 1.0
    with pytest.raises(VerdictError):
        parse_verdict(text, ["a"])


def test_huge_numbers_and_nesting_are_handled():
    big = "9" * 4000  # under Python's int-string limit: parses, and must not overflow a float
    assert NumericMatch().score(f"The answer is {big}", {"answer": 1}).value == 0.0
    assert NumericMatch().score(f"The answer is {big}", {"answer": int(big)}).value == 1.0
    assert NumericMatch().score(f"The answer is {big}/{big}1", {"answer": 0.1}).value == 1.0
    bad_json = [{"type": "json_format"}]
    assert ConstraintVerifier().score('{"a": ' + "9" * 5000 + "}", {"constraints": bad_json}).value == 0.0
    assert ConstraintVerifier().score("[" * 100_000 + "]" * 100_000, {"constraints": bad_json}).value == 0.0
    with pytest.raises(VerdictError):
        parse_verdict('{"verdicts": ' + "[" * 100_000 + "]" * 100_000 + "}", ["a"])
