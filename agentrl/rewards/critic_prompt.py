"""The self-critique critic's prompt and verdict format (K2 §3.2.2, App. F).

The policy itself is the critic. It gets, as OpenAI messages (the model's K2 chat template renders them to
tokens later, `<|im_system|>system<|im_middle|>...`):
- system: critic instructions plus the combined rubrics (core, prescriptive, task; mandatory ones marked);
- user: the conversation prompt and the two candidate responses, labelled Response A and Response B.
The critic must end its answer with exactly one verdict token, `[[A]]` or `[[B]]` (forced choice: the paper's
critic ranks, so no ties in the target format). A short reason before the token is allowed.

`parse_critic_verdict` is deliberately robust, because a small policy's output drifts: it takes the LAST
`[[A]]`/`[[B]]`/`[[tie]]`, else a "Verdict: A" style line, else a bare "A"/"B" answer, else "Response A is
better"; anything contradictory or absent is None (an abstention the reward maths drops).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentrl.rewards.base import Subject
from agentrl.rewards.judge import render_rubrics
from agentrl.rewards.pairwise import Winner
from agentrl.rewards.rubrics import Rubric
from agentrl.rewards.transcript import clip_text, messages_of, render_messages, split_prompt_response

CRITIC_SYSTEM = """You are a critic comparing two candidate responses to the same conversation. Judge them \
against the rubrics below. Mandatory rubrics must be respected; rubrics of kind "prescriptive" are \
prohibitions, and a response that breaks one should lose unless the other breaks it worse. Ignore the order \
in which the responses are shown and their length unless a rubric asks for brevity.

Think briefly if you need to, then end your answer with the verdict on its own line: [[A]] if Response A is \
better, or [[B]] if Response B is better."""

CRITIC_SYSTEM_BRIEF = """Compare Response A and Response B to the conversation against the rubrics. Answer \
[[A]] if A is better, [[B]] if B is better."""


class CriticPromptConfig(BaseModel):
    """How much the critic sees. The defaults are K2's full prompt; a small policy with a short context
    (the CPU demo's k2-tiny, 1024 tokens) needs the compact form: rubric names only, clipped transcripts."""

    model_config = ConfigDict(extra="forbid")

    instructions: Literal["full", "brief"] = "full"
    rubric_detail: Literal["full", "names"] = "full"
    max_conversation_chars: int | None = Field(default=None, ge=40)
    max_response_chars: int | None = Field(default=None, ge=40)


VERDICT_TOKENS: dict[Winner, str] = {"A": "[[A]]", "B": "[[B]]", "tie": "[[tie]]"}

_TOKEN = re.compile(r"\[\[\s*(A|B|tie|C)\s*\]\]", re.IGNORECASE)
# Keywords case-insensitive, the letter case-sensitive: "the answer is a matter of taste" is no verdict.
_LABELLED = re.compile(
    r"(?i:verdict|winner|answer|better(?: response)?|choice)[ \t]{0,3}(?i:is|:|=)[ \t*]{0,8}(?i:response[ \t]{1,3})?([AB])\b"
)
_BARE = re.compile(r"^\W*(?:response\s+)?([AB])\W*$", re.IGNORECASE)
# Case-sensitive on the letter so the article "a" ("a is better" in prose) is not read as a verdict.
_SENTENCE = re.compile(
    r"\b(?:[Rr]esponse\s+)?([AB])\s+is\s+(?:clearly\s+|much\s+|slightly\s+|the\s+)?better\b"
)


def _norm(label: str) -> Winner:
    label = label.upper()
    return "tie" if label in ("TIE", "C") else label  # type: ignore[return-value]


def parse_critic_verdict(text: str) -> Winner | None:
    tokens = _TOKEN.findall(text)
    if tokens:
        return _norm(tokens[-1])
    labelled = _LABELLED.findall(text)
    if labelled:
        return _norm(labelled[-1])
    if _BARE.match(text.strip()):
        return _norm(_BARE.match(text.strip()).group(1))  # type: ignore[union-attr]
    said = {s.upper() for s in _SENTENCE.findall(text)}
    if len(said) == 1:
        return _norm(said.pop())
    return None


def _response_block(subject: Subject, limit: int | None) -> str:
    _, response = split_prompt_response(messages_of(subject))
    return clip_text(render_messages(response), limit) if response else "(empty response)"


def _rubric_block(rubrics: Sequence[Rubric], detail: str) -> str:
    if detail == "names":
        return "\n".join(f"- {r.name}{' (mandatory)' if r.mandatory else ''}" for r in rubrics)
    return render_rubrics(rubrics)


def build_critic_messages(
    prompt: Subject | Sequence[dict[str, Any]],
    response_a: Subject,
    response_b: Subject,
    rubrics: Sequence[Rubric],
    config: CriticPromptConfig | None = None,
) -> list[dict[str, str]]:
    """OpenAI messages asking the critic to compare A and B. `prompt` is a trajectory (its prompt part is
    used), a list of prompt messages, or the user's text."""
    cfg = config or CriticPromptConfig()
    if isinstance(prompt, str):
        prompt_msgs: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, Sequence):
        prompt_msgs = list(prompt)
    else:
        prompt_msgs, _ = split_prompt_response(messages_of(prompt))
    instructions = CRITIC_SYSTEM if cfg.instructions == "full" else CRITIC_SYSTEM_BRIEF
    system = f"{instructions}\n\n# Rubrics\n{_rubric_block(rubrics, cfg.rubric_detail)}"
    user = (
        f"{_CONVERSATION}{clip_text(render_messages(prompt_msgs), cfg.max_conversation_chars)}"
        f"{_RESPONSE_A}{_response_block(response_a, cfg.max_response_chars)}"
        f"{_RESPONSE_B}{_response_block(response_b, cfg.max_response_chars)}{_QUESTION}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_CONVERSATION, _RESPONSE_A, _RESPONSE_B = "# Conversation\n", "\n\n# Response A\n", "\n\n# Response B\n"
_QUESTION = "\n\nWhich response is better? End with [[A]] or [[B]]."


def swap_key(messages: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], bool] | None:
    """(key, first) for a prompt made by `build_critic_messages`: the two orders of one pair share `key` and
    differ in `first`; None for any other prompt. A response that itself contains a section header can be split
    at the wrong place; its prompt then finds no partner, which is safe (the critic falls back to one order)."""
    if len(messages) != 2 or [m.get("role") for m in messages] != ["system", "user"]:
        return None
    user = str(messages[1].get("content") or "")
    if not (user.startswith(_CONVERSATION) and user.endswith(_QUESTION)):
        return None
    body = user[len(_CONVERSATION) : -len(_QUESTION)]
    conversation, sep_a, rest = body.partition(_RESPONSE_A)
    response_a, sep_b, response_b = rest.partition(_RESPONSE_B)
    if not (sep_a and sep_b):
        return None
    low, high = sorted((response_a, response_b))
    return (str(messages[0].get("content")), conversation, low, high), response_a <= response_b
