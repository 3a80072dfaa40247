"""Exact and numeric answer match (K2 §3.2.1, math/STEM/logic families: single verifiable answers).

The final answer is taken from, in order: the last `\\boxed{...}`, the last `#### x` line, the last "answer is
x" / "Answer: x", otherwise the whole response (exact) or its last number (numeric). Numbers accept thousand
separators (`1,234,567`, `1 234`), fractions (`3/4`, `\\frac{3}{4}`), decimals, scientific notation, a leading
currency sign and a trailing `%`. Rationals compare exactly (Fraction); others with `rel_tol`/`abs_tol`.

Hack resistance: an extracted answer that contains several distinct numbers ("3 or 4") fails instead of
matching any of them, and only the final answer counts, so listing many numbers gains nothing.
Deviation: `math-verify` (sympy LaTeX equivalence) is not used; it needs `signal.alarm` and so only works in
the main thread, which reward workers are not. Symbolic answers fall back to normalized exact match.
"""

from __future__ import annotations

import math
import re
import unicodedata
from fractions import Fraction
from typing import Any

from agentrl.rewards.base import RewardError, RewardResult, Subject, response_text, task_field

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# Horizontal whitespace only ([ \t], not \s) next to ^/$ and between adjacent quantifiers: \s spans newlines
# and overlapping quantifiers backtrack quadratically on long whitespace runs, which a policy can emit.
_HASH = re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)[ \t]{0,3}(?:is|:|=)[ \t:]{0,8}(.+?)(?:\n|$)", re.IGNORECASE
)
_NUMBER = re.compile(
    r"""[-+−]?\s?[$€£¥]?\s?
    (?:\d{1,3}(?:,\d{3})+|\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?!\d)|\d+)   # integer part, maybe grouped
    (?:\.\d+)?(?:[eE][-+]?\d+)?                                      # decimals, exponent
    (?:\s*/\s*\d+(?:\.\d+)?)?                                        # a fraction
    \s?%?""",
    re.VERBOSE,
)
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]+?)\s*\}\s*\{\s*([^{}]+?)\s*\}")


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, honouring nested braces."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i, depth = starts[-1], 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def extract_final_answer(text: str) -> tuple[str | None, str]:
    """Return (answer, source) where source names the rule that found it."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip(), "boxed"
    hashes = _HASH.findall(text)
    if hashes:
        return hashes[-1].strip(), "####"
    answers = _ANSWER_IS.findall(text)
    if answers:
        return answers[-1].strip().rstrip("."), "answer_is"
    return None, "none"


def normalize_text(s: str) -> str:
    """Case-fold, drop LaTeX wrappers, punctuation at the ends and repeated whitespace."""
    s = unicodedata.normalize("NFKC", s)
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = s.replace("$", "").replace("\\,", "").replace("\\!", "")
    s = re.sub(r"\s+", " ", s).strip().strip(".,;:!?\"'`*").strip()
    return s.casefold()


def parse_number(s: str) -> tuple[Fraction | float, bool] | None:
    """Parse one number; returns (value, is_percent) or None if `s` is not exactly one number."""
    s = unicodedata.normalize("NFKC", s).strip().replace("−", "-")
    s = _FRAC.sub(r"\1/\2", s)
    s = re.sub(r"\\(?:left|right|,|!|;|\s)", "", s).replace("\\%", "%").replace("{", "").replace("}", "")
    s = s.strip().strip("$").strip().rstrip(".")
    m = _NUMBER.fullmatch(s)
    if m is None:
        return None
    body = re.sub(r"[\s\u00a0\u202f$€£¥,]", "", m.group(0))
    percent = body.endswith("%")
    body = body.rstrip("%")
    try:
        if "/" in body:
            num, den = body.split("/")
            value: Fraction | float = Fraction(num) / Fraction(den)
        elif "e" in body.lower():
            value = float(body)
        else:
            value = Fraction(body)
    except (ValueError, ZeroDivisionError):
        return None
    return value, percent


def _numbers_in(text: str) -> list[str]:
    text = _FRAC.sub(r"\1/\2", text)
    return [m.group(0).strip() for m in _NUMBER.finditer(text) if re.search(r"\d", m.group(0))]


def _exact(x: Fraction | float) -> Fraction | None:
    if isinstance(x, Fraction):
        return x
    return Fraction(x) if math.isfinite(x) else None


def numbers_close(a: Fraction | float, b: Fraction | float, rel_tol: float, abs_tol: float) -> bool:
    """|a - b| <= max(rel_tol * max(|a|, |b|), abs_tol), in exact arithmetic: huge rationals would overflow
    a float conversion, and a policy can write them."""
    fa, fb = _exact(a), _exact(b)
    if fa is None or fb is None:
        return False
    if fa == fb:
        return True
    bound = max(Fraction(rel_tol) * max(abs(fa), abs(fb)), Fraction(abs_tol))
    return abs(fa - fb) <= bound


def _references(task: Any, key: str) -> list[Any]:
    ref = task_field(task, key)
    refs = ref if isinstance(ref, list | tuple) else [ref]
    aliases = task_field(task, "answer_aliases", required=False, default=[]) or []
    return [*refs, *aliases]


class ExactMatch:
    """1.0 when the normalized final answer equals the reference (or one of `answer_aliases`)."""

    name = "exact_match"

    def __init__(self, *, case_sensitive: bool = False, answer_key: str = "answer") -> None:
        self.case_sensitive = case_sensitive
        self.answer_key = answer_key

    def _norm(self, s: str) -> str:
        n = normalize_text(s)
        if self.case_sensitive:  # normalize_text case-folds; redo it without folding
            n = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", s)).strip().strip(".,;:!?\"'`*").strip()
        return n

    def score(self, subject: Subject, task: Any) -> RewardResult:
        text = response_text(subject)
        answer, source = extract_final_answer(text)
        if answer is None:
            answer, source = text, "whole_response"
        refs = [str(r) for r in _references(task, self.answer_key)]
        got = self._norm(answer)
        ok = any(got == self._norm(r) for r in refs)
        return RewardResult(
            value=1.0 if ok else 0.0, details={"extracted": answer, "source": source, "expected": refs}
        )


class NumericMatch:
    """1.0 when the final numeric answer equals the reference within tolerance.

    `percent_mode`: "value" reads `50%` as 50; "either" also accepts 0.5 against a reference of 0.5.
    """

    name = "numeric_match"

    def __init__(
        self,
        *,
        rel_tol: float = 1e-6,
        abs_tol: float = 1e-9,
        percent_mode: str = "either",
        answer_key: str = "answer",
    ) -> None:
        if percent_mode not in ("value", "either"):
            raise ValueError(f"percent_mode must be 'value' or 'either', got {percent_mode!r}")
        self.rel_tol, self.abs_tol = rel_tol, abs_tol
        self.percent_mode = percent_mode
        self.answer_key = answer_key

    def score(self, subject: Subject, task: Any) -> RewardResult:
        text = response_text(subject)
        answer, source = extract_final_answer(text)
        details: dict[str, Any] = {"source": source}
        if answer is not None:
            candidates = _numbers_in(answer)
            if len({str(parse_number(c)) for c in candidates}) > 1:
                return RewardResult(
                    value=0.0, details={**details, "extracted": answer, "reason": "ambiguous"}
                )
            parsed = parse_number(candidates[0]) if candidates else None
        else:
            nums = _numbers_in(text)
            source = details["source"] = "last_number"
            answer = nums[-1] if nums else None
            parsed = parse_number(answer) if answer else None
        details["extracted"] = answer
        if parsed is None:
            return RewardResult(value=0.0, details={**details, "reason": "no number"})
        value, percent = parsed
        got = [value]
        if percent and self.percent_mode == "either":
            got.append(value / 100 if isinstance(value, Fraction) else value / 100.0)
        expected = []
        for ref in _references(task, self.answer_key):
            p = parse_number(str(ref)) if not isinstance(ref, int | float) else (Fraction(str(ref)), False)
            if p is None:
                raise RewardError(f"reference answer {ref!r} is not a number")
            expected.append(p[0])
        ok = any(numbers_close(g, e, self.rel_tol, self.abs_tol) for g in got for e in expected)
        details.update(value=str(value), expected=[str(e) for e in expected])
        return RewardResult(value=1.0 if ok else 0.0, details=details)


class AnswerMatch:
    """Numeric match when the reference is a number, normalized exact match otherwise (for mixed task sets
    such as the reasoning env's, where some answers are numbers and some are words)."""

    name = "answer"

    def __init__(self, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9, answer_key: str = "answer") -> None:
        self.numeric = NumericMatch(rel_tol=rel_tol, abs_tol=abs_tol, answer_key=answer_key)
        self.exact = ExactMatch(answer_key=answer_key)
        self.answer_key = answer_key

    def score(self, subject: Subject, task: Any) -> RewardResult:
        refs = _references(task, self.answer_key)
        numeric = all(isinstance(r, int | float) or parse_number(str(r)) is not None for r in refs)
        return (self.numeric if numeric else self.exact).score(subject, task)
