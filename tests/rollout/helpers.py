"""Shared test helpers for rollout tests.

`ScriptedEngine` is a deterministic stand-in for vLLM used only by the fast loop-logic tests (malformed calls,
budgets, partial resume, failures): those edge cases cannot be forced out of a sampled model. Every claim about
real generation (token equality, logprobs vs the trainer) is tested against real vLLM in the slow tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agentrl.engine.base import Generation, SamplingSpec
from model.chat_format import GENERATION_PROMPT, tool_call_id
from model.special_tokens import (
    IM_END,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_BEGIN,
    TOOL_CALL_END,
    TOOL_CALLS_SECTION_BEGIN,
    TOOL_CALLS_SECTION_END,
)
from tests.servers import free_port, serve_app  # noqa: F401 (re-exported)


def call_text(name: str, args: dict[str, Any], idx: int = 0) -> str:
    return (
        f"{TOOL_CALLS_SECTION_BEGIN}{TOOL_CALL_BEGIN}{tool_call_id(name, idx)}{TOOL_CALL_ARGUMENT_BEGIN}"
        f"{json.dumps(args)}{TOOL_CALL_END}{TOOL_CALLS_SECTION_END}{IM_END}"
    )


class ScriptedEngine:
    """Emits `script(prompt_text, turn)` tokenized; records every call. logprob of each token = -0.5."""

    def __init__(self, tokenizer: Any, script: Callable[[str, int], str]) -> None:
        self.tok = tokenizer
        self.script = script
        self.calls: list[tuple[list[int], list[int]]] = []
        self.policy_version = 0

    def generate(self, prompts: list[list[int]], sampling: list[SamplingSpec]) -> list[Generation]:
        out = []
        for prompt, s in zip(prompts, sampling, strict=True):
            text = self.tok.decode(prompt, skip_special_tokens=False)
            full = self.tok(self.script(text, text.count("<|im_assistant|>")), add_special_tokens=False)[
                "input_ids"
            ]
            # Continue the current assistant turn (partial rollouts resume mid-turn): skip what is generated.
            gp = self.tok(GENERATION_PROMPT, add_special_tokens=False)["input_ids"]
            starts = [i for i in range(len(prompt) - len(gp) + 1) if prompt[i : i + len(gp)] == gp]
            done = prompt[starts[-1] + len(gp) :] if starts else []
            assert full[: len(done)] == done, "scripted turn does not continue the prompt"
            ids = full[len(done) :][: s.max_tokens]
            stop = bool(ids) and ids[-1] in s.stop_token_ids
            self.calls.append((list(prompt), ids))
            out.append(
                Generation(
                    token_ids=ids, logprobs=[-0.5] * len(ids), finish_reason="stop" if stop else "length"
                )
            )
        return out

    def load_weights(self, named_tensors: Any) -> None:
        return None


serve = serve_app  # (base URL, server)
