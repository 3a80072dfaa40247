"""Short-context SFT records: one per assistant turn, holding only that turn's own context.

Why: a k2-tiny policy trained from scratch has to learn to *copy* entity values (a name from the user turn, an id
from a tool result) into tool-call arguments, and a retrieval head forms only after thousands of examples. At
initialisation attention is spread over the whole context, so the gradient that builds the head scales with
1/length; full transcripts carry ~280 tokens, 44% of them JSON tool declarations that never hold a value to copy.
Training first on the turn's own context (the latest user message and everything after it, up to and including
the assistant turn) is a sequence-length warm-up (Li et al. 2022, "The Stability-Efficiency Dilemma"): ~100-token
examples, 3x cheaper, whose copy sources are always in view. BENCHMARKS.md measures it with scripts/copy_probe.py.

A window keeps the chat format exactly (K2 roles, tool-call syntax, tool results) but drops the tool declarations
and replaces the system prompt with an empty one (not the chat template's default prompt). The full-context phase
that follows teaches tool choice from the declarations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

_EMPTY_SYSTEM = {"role": "system", "content": ""}


def turn_windows(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Yield one record per assistant message: [empty system, latest user message, ..., that assistant message].

    Assistant messages before any user message have no request to act on and are skipped.
    """
    for record in records:
        dialogue = [m for m in record["messages"] if m["role"] != "system"]
        last_user: int | None = None
        for index, message in enumerate(dialogue):
            if message["role"] == "user":
                last_user = index
            elif message["role"] == "assistant" and last_user is not None:
                yield {"messages": [_EMPTY_SYSTEM, *dialogue[last_user : index + 1]]}
