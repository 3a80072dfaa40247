"""Render trajectories as plain text for the judge and the critic (both read transcripts, not tokens).

The prompt of an episode is every message before the first assistant turn; the response is the rest
(assistant turns, tool calls and tool results), so agentic samples are compared on what the policy did, not
only on its final words. Long tool outputs are clipped so one transcript cannot crowd out the rubrics.
"""

from __future__ import annotations

import hashlib
from typing import Any

from agentrl.rewards.base import Subject, content_text, stable_json
from agentrl.schemas.trajectory import Trajectory


def messages_of(subject: Subject) -> list[dict[str, Any]]:
    if isinstance(subject, Trajectory):
        return list(subject.messages)
    return [{"role": "assistant", "content": subject}]


def split_prompt_response(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    for i, m in enumerate(messages):
        if m.get("role") == "assistant":
            return messages[:i], messages[i:]
    return list(messages), []


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters omitted ...]\n{text[-half:]}"


def clip_text(text: str, limit: int | None) -> str:
    """`text` cut to about `limit` characters, keeping its head and tail; None = no limit."""
    return text if limit is None else _clip(text, limit)


def render_messages(messages: list[dict[str, Any]], *, max_tool_chars: int = 2000) -> str:
    """`[role]` headed blocks; tool calls as `name(arguments)`."""
    parts = []
    for m in messages:
        role = m.get("role", "?")
        text = content_text(m.get("content"))
        if role == "tool":
            who = m.get("name") or m.get("tool_call_id") or "tool"
            parts.append(f"[tool result: {who}]\n{_clip(text, max_tool_chars)}")
            continue
        block = f"[{role}]\n{text}" if text.strip() else f"[{role}]"
        for call in m.get("tool_calls") or []:
            fn = call.get("function", call)
            block += f"\n-> call {fn.get('name')}({fn.get('arguments', '')})"
        parts.append(block)
    return "\n\n".join(parts)


def transcript_hash(messages: list[dict[str, Any]]) -> str:
    return hashlib.sha256(stable_json(messages).encode()).hexdigest()
