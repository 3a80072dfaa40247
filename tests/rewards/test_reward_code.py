"""Unit-test verifier against a real subprocess runner (the bubblewrap code env does not exist yet)."""

import pytest

from agentrl.rewards.base import RewardError
from agentrl.rewards.verifiers.code import CodeRunner, SubprocessCodeRunner, UnitTestVerifier, extract_code

TASK = {"id": "add", "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(0, 0) == 0"]}


@pytest.fixture(scope="module")
def verifier():
    return UnitTestVerifier(SubprocessCodeRunner(), timeout_s=5.0)


def _py(code: str) -> str:
    return f"Here is my solution:\n```python\n{code}\n```\n"


def test_runner_satisfies_protocol():
    assert isinstance(SubprocessCodeRunner(), CodeRunner)


def test_correct_solution_passes(verifier):
    r = verifier.score(_py("def add(a, b):\n    return a + b"), TASK)
    assert r.value == 1.0 and r.details["passed"] == 3


def test_wrong_solution_fails_with_partial_credit_option(verifier):
    code = _py("def add(a, b):\n    return a * b if a else 0")  # right only for add(0, 0)
    assert verifier.score(code, TASK).value == 0.0
    partial = UnitTestVerifier(SubprocessCodeRunner(), partial_credit=True).score(code, TASK)
    assert partial.value == pytest.approx(1 / 3)
    assert partial.details["failures"][0].startswith("AssertionError")


@pytest.mark.parametrize(
    "code",
    [
        # print a fake result line without knowing the nonce
        'print("AGENTRL_TEST_RESULT deadbeef [[true, \\"\\"], [true, \\"\\"], [true, \\"\\"]]")',
        # leave before the harness can report
        "import os\nos._exit(0)",
        "import sys\nsys.exit(0)",
        # break the assertion machinery for the tests
        "import builtins\nbuiltins.AssertionError = type('X', (BaseException,), {})\ndef add(a, b): return 0",
    ],
)
def test_hack_attempts_score_zero(verifier, code):
    assert verifier.score(_py(code), TASK).value == 0.0


def test_timeout_and_crash(verifier):
    fast = UnitTestVerifier(SubprocessCodeRunner(), timeout_s=1.0)
    r = fast.score(_py("while True:\n    pass"), TASK)
    assert r.value == 0.0 and r.details["reason"] == "timeout"
    r = verifier.score(_py("def add(a, b):\n    return a +"), TASK)
    assert r.value == 0.0 and "SyntaxError" in r.details["failures"][0]


def test_no_code_and_bad_tests(verifier):
    r = verifier.score("I would add the numbers.", TASK)
    assert r.value == 0.0 and r.details["reason"] == "no code found"
    with pytest.raises(RewardError, match="tests"):
        verifier.score(_py("x = 1"), {"tests": []})


def test_setup_and_last_block_wins(verifier):
    text = "```python\ndef add(a, b): return 0\n```\nFixed:\n```python\ndef add(a, b): return a + b\n```"
    assert verifier.score(text, {"tests": ["assert add(BASE, 1) == 11"], "setup": "BASE = 10"}).value == 1.0
    assert extract_code("x = 1\nprint(x)") == "x = 1\nprint(x)"
    assert extract_code("not code at all!") is None
