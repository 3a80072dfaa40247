"""Rewrite prompts for knowledge rephrasing: styles x perspectives, math learning notes, chunk prompts.

K2 §2 rephrases knowledge text with "style- and perspective-diverse prompting" and rewrites mathematics "into a
learning-note style" (k2.md §1 "data"). The paper does not publish its prompts; the ones below are ours. A
rewrite style is one `Style` (how the text reads) combined with one `Perspective` (who is speaking to whom);
math documents use the learning-note styles instead. Several rephrasings of one document draw distinct
(style, perspective) pairs, so the added copies differ from each other and from the source.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Style:
    id: str
    instruction: str
    request: str  # the user turn of the output record: "{request} {title}."


@dataclass(frozen=True)
class Perspective:
    id: str
    instruction: str


KNOWLEDGE_STYLES = (
    Style("encyclopedic", "Write it as a neutral, well-organised encyclopedia entry.", "Write an encyclopedia entry on"),
    Style("textbook", "Write it as a passage from a university textbook, with clear topic sentences.", "Write a textbook passage about"),
    Style("plain", "Write it in plain, simple language that a curious high-school student can follow.", "Explain in plain language:"),
    Style("qa", "Write it as a sequence of questions and answers that together cover every fact.", "Write questions and answers about"),
    Style("lecture", "Write it as a lecturer speaking to a class, in flowing spoken prose.", "Give a short lecture on"),
    Style("notes", "Write it as concise study notes (short bullet points) that keep every fact.", "Write study notes on"),
)  # fmt: skip

PERSPECTIVES = (
    Perspective("narrator", "Use a neutral third-person voice."),
    Perspective("expert", "Speak as a domain expert explaining it to a colleague."),
    Perspective("teacher", "Speak as a teacher explaining it to a student, addressing them as 'you'."),
    Perspective("journalist", "Speak as a science journalist reporting it to general readers."),
    Perspective("learner", "Speak as a learner in the first person, recounting what they have understood."),
)

MATH_STYLES = (
    Style("learning_note", "Rewrite it as a student's learning note: first the key definitions and results, then the reasoning worked through step by step in your own words, then a short 'Key takeaways' list.", "Write a learning note on"),
    Style("worked_note", "Rewrite it as a learning note built around the worked steps: restate the problem or claim, derive each step with a one-line justification, and end with what to remember.", "Write a worked learning note on"),
)  # fmt: skip

SYSTEM_PROMPT = (
    "You rewrite documents faithfully in a requested style. Keep every fact, name, number, date and formula of "
    "the source exactly; add no claim that is not in the source; leave nothing out. Write in the language of "
    "the source. Output only the rewritten text, with no preamble and no comment on the task."
)

_MATH_HINT = re.compile(
    r"\$[^$]+\$|\\(frac|sum|int|sqrt|begin\{equation|cdot|leq|geq)|\b(theorem|lemma|proof|corollary|equation|"
    r"integral|derivative|polynomial|matrix|prove that|let [a-z] be)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RewritePlan:
    """One rephrasing of one document: its style and perspective (perspective None for learning notes)."""

    style: Style
    perspective: Perspective | None
    math: bool

    @property
    def id(self) -> str:
        return self.style.id if self.perspective is None else f"{self.style.id}/{self.perspective.id}"


def looks_like_math(text: str, min_hits: int = 2) -> bool:
    """A cheap detector for `math: auto`: at least `min_hits` LaTeX fragments or math words."""
    return sum(1 for _ in zip(range(min_hits), _MATH_HINT.finditer(text), strict=False)) >= min_hits


def plan_rewrites(n: int, math: bool, rng: random.Random) -> list[RewritePlan]:
    """`n` rewrite plans with pairwise-distinct (style, perspective), drawn without replacement while they last."""
    if math:
        combos: list[tuple[Style, Perspective | None]] = [(s, None) for s in MATH_STYLES]
    else:
        combos = [(s, p) for s in KNOWLEDGE_STYLES for p in PERSPECTIVES]
    order = rng.sample(combos, len(combos))
    picks = [order[i % len(order)] for i in range(n)]
    return [RewritePlan(style=s, perspective=p, math=math) for s, p in picks]


def chunk_messages(
    plan: RewritePlan,
    chunk: str,
    *,
    index: int,
    total: int,
    title: str,
    previous_rewrite: str | None,
    context_chars: int,
) -> list[dict[str, Any]]:
    """The chat messages that ask for the rewrite of chunk `index` (0-based) of `total`.

    Autoregressive: from the second chunk on, the prompt carries the (tail of the) accepted rewrite of the chunk
    before, so the model continues its own text instead of restarting the document."""
    how = plan.style.instruction + (f" {plan.perspective.instruction}" if plan.perspective else "")
    parts = [f"Document: {title}", f"How to rewrite: {how}"]
    if total > 1:
        parts.append(f"The document is long, so it is rewritten in {total} parts; this is part {index + 1}.")
    if previous_rewrite:
        tail = previous_rewrite[-context_chars:] if context_chars else ""
        if tail:
            parts.append(
                "Your rewrite of the previous part ends as follows. Continue seamlessly from it, in the same "
                f"style, without repeating it:\n<previous_rewrite>\n{tail}\n</previous_rewrite>"
            )
    parts.append(f"Rewrite this part of the source:\n<source>\n{chunk}\n</source>")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def record_request(plan: RewritePlan, title: str) -> str:
    """The user turn of the SFT/PTX record whose assistant turn is the rephrased document."""
    return f"{plan.style.request} {title.rstrip('.')}."
