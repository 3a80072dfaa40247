"""Render OpenAI-format messages in K2's chat format and parse the model's output back.

Pure string code (no torch, no transformers): the rollout loop, synth and environments use it. The Jinja template
in `assets/chat_template.jinja` renders the same text; a test keeps the two identical.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from model.special_tokens import (
    IM_ASSISTANT,
    IM_END,
    IM_MIDDLE,
    IM_SYSTEM,
    IM_USER,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_BEGIN,
    TOOL_CALL_END,
    TOOL_CALLS_SECTION_BEGIN,
    TOOL_CALLS_SECTION_END,
)

DEFAULT_SYSTEM = "You are Kimi, an AI assistant created by Moonshot AI."
GENERATION_PROMPT = f"{IM_ASSISTANT}assistant{IM_MIDDLE}"

# Same pattern as vLLM's kimi_k2 parser (k2.md §6.3).
_CALL_RE = re.compile(
    re.escape(TOOL_CALL_BEGIN)
    + r"\s*(?P<id>[^<]+:\d+)\s*"
    + re.escape(TOOL_CALL_ARGUMENT_BEGIN)
    + r"\s*(?P<args>(?:(?!"
    + re.escape(TOOL_CALL_BEGIN)
    + r").)*?)\s*"
    + re.escape(TOOL_CALL_END),
    re.DOTALL,
)


def tool_call_id(name: str, index: int) -> str:
    """K2's call id: `functions.{name}:{idx}`, idx counting calls from 0 within the dialog."""
    return f"functions.{name}:{index}"


def _render_tool_calls(tool_calls: list[dict[str, Any]]) -> str:
    parts = [TOOL_CALLS_SECTION_BEGIN]
    for call in tool_calls:
        args = call["function"]["arguments"]
        if not isinstance(args, str):
            args = json.dumps(args)
        parts.append(f"{TOOL_CALL_BEGIN}{call['id']}{TOOL_CALL_ARGUMENT_BEGIN}{args}{TOOL_CALL_END}")
    parts.append(TOOL_CALLS_SECTION_END)
    return "".join(parts)


def render_assistant_body(message: dict[str, Any]) -> str:
    """What the policy generates for one assistant turn, `<|im_end|>` included."""
    body = message.get("content") or ""
    if message.get("tool_calls"):
        body += _render_tool_calls(message["tool_calls"])
    return body + IM_END


def render_message(message: dict[str, Any]) -> str:
    role = message["role"]
    if role == "user":
        return f"{IM_USER}{message.get('name') or 'user'}{IM_MIDDLE}{message['content']}{IM_END}"
    if role == "assistant":
        return (
            f"{IM_ASSISTANT}{message.get('name') or 'assistant'}{IM_MIDDLE}{render_assistant_body(message)}"
        )
    if role == "tool":
        name = message.get("name") or "tool"
        return f"{IM_SYSTEM}{name}{IM_MIDDLE}## Return of {message['tool_call_id']}\n{message['content']}{IM_END}"
    return f"{IM_SYSTEM}{message.get('name') or role}{IM_MIDDLE}{message['content']}{IM_END}"


def render_tools(tools: list[dict[str, Any]]) -> str:
    return f"{IM_SYSTEM}tool_declare{IM_MIDDLE}{json.dumps(tools, separators=(',', ':'))}{IM_END}"


def render_messages(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """The full prompt text, identical to the Jinja chat template's output."""
    out = render_tools(tools) if tools else ""
    if messages and messages[0]["role"] != "system":
        out += f"{IM_SYSTEM}system{IM_MIDDLE}{DEFAULT_SYSTEM}{IM_END}"
    out += "".join(render_message(m) for m in messages)
    if add_generation_prompt:
        out += GENERATION_PROMPT
    return out


@dataclass
class ParsedOutput:
    """One assistant turn parsed from model text. `errors` lists malformed parts (never raises)."""

    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    finished: bool = False  # saw <|im_end|>


def parse_assistant_output(text: str) -> ParsedOutput:
    """Parse generated text into content + OpenAI-format tool calls, like vLLM's kimi_k2 parser.

    Arguments are kept as the raw string (the environment validates them); ids are kept verbatim.
    """
    finished = IM_END in text
    if finished:
        text = text.split(IM_END, 1)[0]
    if TOOL_CALLS_SECTION_BEGIN not in text:
        return ParsedOutput(content=text, finished=finished)
    content, section = text.split(TOOL_CALLS_SECTION_BEGIN, 1)
    errors = []
    if TOOL_CALLS_SECTION_END not in section:
        errors.append("tool-call section is not closed")
    section = section.split(TOOL_CALLS_SECTION_END, 1)[0]
    calls = []
    for match in _CALL_RE.finditer(section):
        call_id = match.group("id").strip()
        name = call_id.split(":")[0].removeprefix("functions.")
        calls.append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": match.group("args")}}
        )
    if section.count(TOOL_CALL_BEGIN) != len(calls):
        errors.append(f"{section.count(TOOL_CALL_BEGIN) - len(calls)} malformed tool call(s)")
    elif not calls and not errors:  # an opened section with no call in it was a silent empty final answer
        errors.append("tool-call section holds no tool call")
    return ParsedOutput(content=content, tool_calls=calls, errors=errors, finished=finished)
