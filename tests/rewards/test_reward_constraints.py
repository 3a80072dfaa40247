import pytest

from agentrl.rewards.base import RewardError
from agentrl.rewards.verifiers.constraints import ConstraintVerifier, parse_constraints

TEXT = "Apples are red.\n\n- one\n- two\n* three\n\nThe end."


@pytest.mark.parametrize(
    ("constraint", "text", "ok"),
    [
        ({"type": "word_count", "max": 10}, "one two three", True),
        ({"type": "word_count", "max": 2}, "one two three", False),
        ({"type": "word_count", "min": 3, "max": 3}, "don't stop-now please", True),
        ({"type": "length_chars", "max": 5}, "  hello  ", True),
        ({"type": "length_chars", "max": 4}, "hello", False),
        ({"type": "sentence_count", "max": 2}, "One. Two! Three?", False),
        ({"type": "sentence_count", "min": 3}, "One. Two! Three?", True),
        ({"type": "paragraph_count", "min": 3, "max": 3}, TEXT, True),
        ({"type": "bullet_count", "min": 3, "max": 3}, TEXT, True),
        ({"type": "bullet_count", "max": 2}, TEXT, False),
        ({"type": "bullet_count", "min": 1}, "1. first\n2) second", True),
        ({"type": "forbidden_words", "words": ["red"]}, TEXT, False),
        ({"type": "forbidden_words", "words": ["re"]}, TEXT, True),  # whole words only
        ({"type": "forbidden_words", "words": ["Red"], "case_sensitive": True}, TEXT, True),
        ({"type": "required_keywords", "keywords": ["apples", "end"]}, TEXT, True),
        ({"type": "required_keywords", "keywords": ["pear"]}, TEXT, False),
        ({"type": "required_keywords", "keywords": ["two"], "min_count": 2}, TEXT, False),
        ({"type": "json_format"}, '{"a": 1}', True),
        ({"type": "json_format"}, '```json\n{"a": 1}\n```', True),
        ({"type": "json_format", "allow_code_fence": False}, '```json\n{"a": 1}\n```', False),
        ({"type": "json_format"}, "{'a': 1}", False),
        ({"type": "json_format", "schema": {"type": "object", "required": ["b"]}}, '{"a": 1}', False),
        ({"type": "case", "mode": "lower"}, "all lower, 123", True),
        ({"type": "case", "mode": "lower"}, "Not lower", False),
        ({"type": "case", "mode": "upper"}, "SHOUT!", True),
        ({"type": "ends_with", "text": "Is there anything else?"}, "Done. Is there anything else?  \n", True),
        ({"type": "ends_with", "text": "Bye."}, "Bye. P.S. hi", False),
        ({"type": "starts_with", "text": "Dear"}, "  Dear Sir", True),
        ({"type": "no_commas"}, "a, b", False),
        ({"type": "no_commas"}, "a b", True),
        ({"type": "regex", "pattern": r"^Title: .+$"}, "Title: X\nbody", True),
        ({"type": "regex", "pattern": r"\d", "must_match": False}, "has 1 digit", False),
    ],
)
def test_constraint(constraint, text, ok):
    result = ConstraintVerifier().score(text, {"constraints": [constraint]})
    assert (result.value == 1.0) is ok, result.details


def test_partial_credit_and_all_or_nothing():
    task = {
        "constraints": [
            {"type": "no_commas"},
            {"type": "word_count", "max": 100},
            {"type": "case", "mode": "upper"},
        ]
    }
    assert ConstraintVerifier(partial_credit=True).score("a, b", task).value == pytest.approx(1 / 3)
    assert ConstraintVerifier().score("a, b", task).value == 0.0


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        ([{"type": "word_count"}], r"constraints\[0\] \(type=word_count\).*give min, max or both"),
        ([{"type": "word_count", "min": 5, "max": 2}], r"min 5 > max 2"),
        ([{"type": "no_commas"}, {"type": "teleport"}], r"constraints\[1\] \(type=teleport\)"),
        ([{"type": "forbidden_words", "words": []}], r"constraints\[0\] \(type=forbidden_words\) words"),
        ([{"type": "regex", "pattern": "("}], r"bad regex"),
        ([{"type": "no_commas", "extra": 1}], r"extra.*Extra inputs"),
    ],
)
def test_invalid_constraints_name_the_problem(raw, pattern):
    with pytest.raises(RewardError, match=pattern) as e:
        parse_constraints(raw, where="task 'if-7'")
    assert "task 'if-7'" in str(e.value)
