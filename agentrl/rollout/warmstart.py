"""A tiny policy that speaks K2's tool-call format, for rollout tests and `agentrl bench rollout`.

A random-init model almost never emits `<|im_end|>` or a tool-call section, so a multi-turn rollout with it is one
long truncated turn. Here the tiny model is overfit (~1–2 minutes on 2 cores, loss on the assistant tokens) on
oracle transcripts of the key-value demo environment (`environments.protocol.demo.KeyValueEnv`, with a short
prompt: `ShortKV`), played through the real environment so tool results are genuine. The result emits tool calls (some malformed at temperature 1, which the loop must survive), reads tool
results and ends with a final answer: realistic multi-turn traffic at CPU scale. It is a fixture, not SFT (issue 5
owns SFT).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

from environments.protocol import Action, Message, Observation
from environments.protocol.demo import KeyValueEnv
from model.chat_format import tool_call_id

log = logging.getLogger(__name__)

WORDS = ["color", "city", "year", "name", "pet", "fruit", "code", "size", "day", "tool", "room", "light"]
VALUES = ["blue", "Paris", "1889", "alice", "cat", "apple", "42", "large", "monday", "hammer", "7", "on"]


SET_VALUE_TOOL = {
    "type": "function",
    "function": {
        "name": "set_value",
        "parameters": {
            "type": "object",
            "properties": {"key": {"type": "string"}, "value": {"type": "string"}},
        },
    },
}


class ShortKV(KeyValueEnv):
    """The key-value environment with a short prompt and one declared tool (`set_value`).

    Same tools, state and reward as `KeyValueEnv`; only the observation is shorter (~100 tokens instead of ~360),
    which makes the warm start several times cheaper on CPU.
    """

    name = "short_kv"

    def reset(
        self, task_id: str | None = None, task_spec: dict[str, Any] | None = None, seed: int | None = None
    ) -> Observation:
        obs = super().reset(task_id=task_id, task_spec=task_spec, seed=seed)
        pairs = " ".join(f"{k}={v}" for k, v in self.task["pairs"].items())
        messages = [
            Message(role="system", content="Store pairs."),
            Message(role="user", content=f"{pairs}. {self.task['ask']}?"),
        ]
        return obs.model_copy(update={"messages": messages, "tools": [SET_VALUE_TOOL]})


def kv_task(rng: random.Random, max_pairs: int = 3) -> dict[str, Any]:
    keys = rng.sample(WORDS, rng.randint(1, max_pairs))
    pairs = {k: rng.choice(VALUES) for k in keys}
    return {"pairs": pairs, "ask": rng.choice(keys)}


def oracle_transcript(task: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """Play the task in the real environment with the right calls (one or two tool turns, then the answer)."""
    env = ShortKV()
    obs = env.reset(task_spec=task)
    messages = [m.openai() for m in obs.messages]
    items = list(task["pairs"].items())
    split = rng.randint(1, len(items))
    idx = 0
    for chunk in (items[:split], items[split:]):
        if not chunk:
            continue
        calls = []
        for k, v in chunk:
            calls.append(
                {
                    "id": tool_call_id("set_value", idx),
                    "type": "function",
                    "function": {"name": "set_value", "arguments": json.dumps({"key": k, "value": v})},
                }
            )
            idx += 1
        result = env.step(Action(tool_calls=calls))
        messages.append({"role": "assistant", "content": "", "tool_calls": calls})
        messages += [m.openai() for m in result.messages]
    messages.append({"role": "assistant", "content": task["pairs"][task["ask"]]})
    return messages


def train_tool_policy(
    checkpoint: str | Path, out_dir: str | Path, steps: int = 200, seed: int = 0, lr: float = 2e-3
) -> Path:
    """Overfit the checkpoint on oracle key-value transcripts and save it to `out_dir`."""
    import torch

    from model.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, tok = load_checkpoint(checkpoint, dtype=torch.float32)
    model.train()
    # Loss on the assistant's tokens only: the random pairs in the user turn are noise the model cannot learn,
    # and with them in the loss 50 steps left it emitting garbage instead of tool calls.
    rows_all = []
    for _ in range(64):
        enc = tok.apply_chat_template(
            oracle_transcript(kv_task(rng), rng),
            tools=[SET_VALUE_TOOL],
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        ids_i = list(enc["input_ids"])
        rows_all.append(
            (ids_i, [t if m else -100 for t, m in zip(ids_i, enc["assistant_masks"], strict=True)])
        )
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    batch = 8
    for step in range(steps):
        rows = [rows_all[(step * batch + i) % len(rows_all)] for i in range(batch)]
        width = max(len(r) for r, _ in rows)
        ids = torch.full((batch, width), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, width), -100, dtype=torch.long)
        for i, (r, lab) in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            labels[i, : len(r)] = torch.tensor(lab)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            log.info("warm start step %d/%d loss %.3f", step + 1, steps, loss.item())
    model.eval()
    return save_checkpoint(model, tok, out_dir)
