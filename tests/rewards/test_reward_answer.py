from fractions import Fraction

import pytest

from agentrl.rewards.base import RewardError
from agentrl.rewards.verifiers.answer import ExactMatch, NumericMatch, extract_final_answer, parse_number
from agentrl.schemas.trajectory import Trajectory


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,234,567", Fraction(1234567)),
        ("1 234", Fraction(1234)),
        ("3/4", Fraction(3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("\\dfrac{10}{4}", Fraction(5, 2)),
        ("-2.5e3", -2500.0),
        ("$1,200.50", Fraction(2401, 2)),
        ("0.750", Fraction(3, 4)),
        ("−7", Fraction(-7)),
    ],
)
def test_parse_number(text, value):
    parsed = parse_number(text)
    assert parsed is not None and parsed[0] == value


@pytest.mark.parametrize("text", ["1,5", "12,34", "abc", "3 or 4", "", "1/0"])
def test_parse_number_rejects(text):
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        ("The total is therefore 1,234. The answer is 1,234.", 1234),
        ("so we get \\boxed{\\frac{1}{2}}", 0.5),
        ("Working: 3 + 4 = 7, then 7 * 2 = 14", 14),
        ("#### 75%", 0.75),  # percent read as a fraction ("either" mode)
        ("#### 75%", 75),
        ("Final answer: 0.3333333", "1/3"),  # 1e-7 relative error, inside rel_tol
        ("The answer is 2.0", 2),
    ],
)
def test_numeric_match_positive(response, answer):
    nm = NumericMatch(rel_tol=1e-6)
    result = nm.score(response, {"answer": answer})
    assert result.value == 1.0, result.details


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        ("The answer is 12", 13),
        ("Answer: 3 or 4", 3),  # hedging across candidates is not an answer
        ("Answer: 3 or 4", 4),
        ("Candidates: 1 2 3 4 5 6 7 8 9 10 11 12 13", 7),  # enumerating numbers: only the last one counts
        ("I don't know", 5),
        ("\\boxed{42} ... actually \\boxed{41}", 42),  # the last boxed answer counts
    ],
)
def test_numeric_match_negative(response, answer):
    assert NumericMatch().score(response, {"answer": answer}).value == 0.0


def test_numeric_tolerance_and_percent_mode():
    assert NumericMatch(rel_tol=0.01).score("Answer: 3.14", {"answer": 3.14159}).value == 1.0
    assert NumericMatch(rel_tol=1e-6).score("Answer: 3.14", {"answer": 3.14159}).value == 0.0
    assert NumericMatch(percent_mode="value").score("#### 75%", {"answer": 0.75}).value == 0.0


def test_numeric_reads_trajectory_and_aliases():
    t = Trajectory(
        id="t",
        task_id="x",
        messages=[
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "The answer is 4"},
            {"role": "assistant", "content": None, "tool_calls": []},
        ],
    )
    assert NumericMatch().score(t, {"answer": 4}).value == 1.0
    assert NumericMatch().score("Answer: 8", {"answer": 4, "answer_aliases": ["8"]}).value == 1.0


def test_bad_reference_and_missing_field():
    with pytest.raises(RewardError, match="not a number"):
        NumericMatch().score("Answer: 3", {"answer": "three"})
    with pytest.raises(RewardError, match="task 'q1' has no 'answer' field"):
        NumericMatch().score("Answer: 3", {"id": "q1"})


def test_exact_match():
    em = ExactMatch()
    assert em.score("The answer is Paris.", {"answer": "paris"}).value == 1.0
    assert em.score("\\boxed{\\text{Paris}}", {"answer": "Paris"}).value == 1.0
    assert em.score("  PARIS  ", {"answer": ["Paris", "Paris, France"]}).value == 1.0
    assert em.score("The answer is Paris or London", {"answer": "Paris"}).value == 0.0
    assert em.score("Paris, probably. Or London.", {"answer": "Paris"}).value == 0.0
    assert ExactMatch(case_sensitive=True).score("Answer: paris", {"answer": "Paris"}).value == 0.0


def test_extract_final_answer_nested_boxed():
    assert extract_final_answer("x \\boxed{\\frac{1}{\\sqrt{2}}} y") == ("\\frac{1}{\\sqrt{2}}", "boxed")


def test_answer_match_dispatches_on_reference_type():
    from agentrl.rewards.verifiers import AnswerMatch

    am = AnswerMatch()
    assert am.score("The answer is 1,000", {"answer": 1000}).value == 1.0
    assert am.score("The answer is 1,000", {"answer": "1000"}).value == 1.0
    assert am.score("The answer is blue", {"answer": "Blue"}).value == 1.0
    assert am.score("The answer is 7", {"answer": "blue"}).value == 0.0
