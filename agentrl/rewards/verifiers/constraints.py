"""Instruction constraints checked by code (K2 §3.2.1, complex instruction following, part 1 of the hybrid
verification: "code-interpreter checks for verifiable constraints (length, style)"; IFEval-style).

A task lists its constraints under `constraints:` as dicts with a `type` key; they validate into the pydantic
models below (unknown types or fields fail with a message naming the constraint). Nuanced constraints go to the
LLM judge instead; claims of compliance are checked by `hack_check`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from agentrl.rewards.base import RewardError, RewardResult, Subject, response_text, task_field

_WORD = re.compile(r"\b[\w'’-]+\b", re.UNICODE)
_BULLET = re.compile(r"^[ \t]*(?:[-*•+]|\d+[.)])[ \t]+\S", re.MULTILINE)  # [ \t]: see answer._HASH
_SENTENCE_END = re.compile(r"[.!?]+(?:\s+|$)")


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def count_sentences(text: str) -> int:
    return len([s for s in _SENTENCE_END.split(text.strip()) if s.strip()])


def count_bullets(text: str) -> int:
    return len(_BULLET.findall(text))


def count_paragraphs(text: str) -> int:
    return len([p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()])


def strip_code_fence(text: str) -> str:
    m = re.fullmatch(r"\s*```[\w-]*\s*\n(.*?)\n?```\s*", text, re.DOTALL)
    return m.group(1) if m else text.strip()


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Range(_Base):
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self

    def _within(self, n: int, what: str) -> tuple[bool, str]:
        ok = (self.min is None or n >= self.min) and (self.max is None or n <= self.max)
        return ok, f"{n} {what} (allowed {self.min if self.min is not None else 0}..{self.max or 'inf'})"


class LengthChars(_Range):
    type: Literal["length_chars"]

    def check(self, text: str) -> tuple[bool, str]:
        return self._within(len(text.strip()), "characters")


class WordCount(_Range):
    type: Literal["word_count"]

    def check(self, text: str) -> tuple[bool, str]:
        return self._within(count_words(text), "words")


class SentenceCount(_Range):
    type: Literal["sentence_count"]

    def check(self, text: str) -> tuple[bool, str]:
        return self._within(count_sentences(text), "sentences")


class ParagraphCount(_Range):
    type: Literal["paragraph_count"]

    def check(self, text: str) -> tuple[bool, str]:
        return self._within(count_paragraphs(text), "paragraphs")


class BulletCount(_Range):
    type: Literal["bullet_count"]

    def check(self, text: str) -> tuple[bool, str]:
        return self._within(count_bullets(text), "bullet points")


def _word_re(word: str, case_sensitive: bool) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w]){re.escape(word)}(?![\w])", 0 if case_sensitive else re.IGNORECASE)


class ForbiddenWords(_Base):
    type: Literal["forbidden_words"]
    words: list[str] = Field(min_length=1)
    case_sensitive: bool = False

    def check(self, text: str) -> tuple[bool, str]:
        found = [w for w in self.words if _word_re(w, self.case_sensitive).search(text)]
        return not found, f"forbidden words present: {found}" if found else "no forbidden words"


class RequiredKeywords(_Base):
    type: Literal["required_keywords"]
    keywords: list[str] = Field(min_length=1)
    min_count: int = Field(default=1, ge=1, description="Occurrences needed of each keyword.")
    case_sensitive: bool = False

    def check(self, text: str) -> tuple[bool, str]:
        missing = [
            k for k in self.keywords if len(_word_re(k, self.case_sensitive).findall(text)) < self.min_count
        ]
        return not missing, f"missing keywords: {missing}" if missing else "all keywords present"


class JsonFormat(_Base):
    type: Literal["json_format"]
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    allow_code_fence: bool = True

    def check(self, text: str) -> tuple[bool, str]:
        body = strip_code_fence(text) if self.allow_code_fence else text.strip()
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as exc:
            return False, f"not valid JSON: {exc.msg} at char {exc.pos}"
        except (ValueError, RecursionError) as exc:  # huge integers, absurd nesting: a policy can write both
            return False, f"not usable JSON: {type(exc).__name__}: {str(exc)[:100]}"
        if self.json_schema is not None:
            import jsonschema  # deferred: only JSON-schema constraints need it

            try:
                jsonschema.validate(obj, self.json_schema)
            except jsonschema.ValidationError as exc:
                return False, f"JSON does not match schema: {exc.message}"
        return True, "valid JSON"


class Case(_Base):
    type: Literal["case"]
    mode: Literal["lower", "upper"]

    def check(self, text: str) -> tuple[bool, str]:
        ok = text == text.lower() if self.mode == "lower" else text == text.upper()
        return ok, f"{'is' if ok else 'is not'} all {self.mode}case"


class EndsWith(_Base):
    type: Literal["ends_with"]
    text: str = Field(min_length=1)

    def check(self, text: str) -> tuple[bool, str]:
        ok = text.rstrip().endswith(self.text.strip())
        return ok, f"{'ends' if ok else 'does not end'} with {self.text!r}"


class StartsWith(_Base):
    type: Literal["starts_with"]
    text: str = Field(min_length=1)

    def check(self, text: str) -> tuple[bool, str]:
        ok = text.lstrip().startswith(self.text.strip())
        return ok, f"{'starts' if ok else 'does not start'} with {self.text!r}"


class NoCommas(_Base):
    type: Literal["no_commas"]

    def check(self, text: str) -> tuple[bool, str]:
        n = text.count(",")
        return n == 0, f"{n} commas"


class RegexMatch(_Base):
    type: Literal["regex"]
    pattern: str
    must_match: bool = True

    @model_validator(mode="after")
    def _compiles(self) -> RegexMatch:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"bad regex {self.pattern!r}: {exc}") from None
        return self

    def check(self, text: str) -> tuple[bool, str]:
        found = re.search(self.pattern, text, re.MULTILINE) is not None
        return found == self.must_match, f"pattern {'found' if found else 'not found'}"


Constraint = Annotated[
    LengthChars
    | WordCount
    | SentenceCount
    | ParagraphCount
    | BulletCount
    | ForbiddenWords
    | RequiredKeywords
    | JsonFormat
    | Case
    | EndsWith
    | StartsWith
    | NoCommas
    | RegexMatch,
    Field(discriminator="type"),
]
_ADAPTER = TypeAdapter(list[Constraint])


def parse_constraints(raw: Any, *, where: str = "task") -> list[Constraint]:
    """Validate a list of constraint dicts; errors name the constraint index, type and field."""
    if isinstance(raw, list) and all(isinstance(c, BaseModel) for c in raw):
        return list(raw)
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = list(err["loc"])
            idx = loc[0] if loc and isinstance(loc[0], int) else None
            ctype = raw[idx].get("type") if idx is not None and isinstance(raw[idx], dict) else None
            field = ".".join(str(p) for p in loc[2:] or loc[1:])
            lines.append(f"  constraints[{idx}] (type={ctype}) {field}: {err['msg']}")
        raise RewardError(f"{where}: invalid constraints:\n" + "\n".join(lines)) from None


def check_constraints(text: str, constraints: list[Constraint]) -> list[dict[str, Any]]:
    return [{"type": c.type, "ok": ok, "detail": msg} for c in constraints for ok, msg in [c.check(text)]]


class ConstraintVerifier:
    """Reward = fraction of constraints met (`partial_credit`) or 1.0 only when all are met."""

    name = "constraints"

    def __init__(self, *, partial_credit: bool = False) -> None:
        self.partial_credit = partial_credit

    def score(self, subject: Subject, task: Any) -> RewardResult:
        tid = task_field(task, "id", required=False)
        constraints = parse_constraints(task_field(task, "constraints"), where=f"task {tid!r}")
        results = check_constraints(response_text(subject), constraints)
        if not results:
            return RewardResult(value=1.0, details={"checks": []})
        frac = sum(r["ok"] for r in results) / len(results)
        value = frac if self.partial_credit else float(frac == 1.0)
        return RewardResult(value=value, details={"checks": results, "fraction_met": frac})
