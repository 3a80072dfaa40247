"""Critic warm-up: the letter-margin phase moves the critic's A-vs-B margin toward the verified verdict, keeps the
transcripts' loss in view, and refuses a set of examples none of which fits.

A random-init k2-tiny cannot learn a content-dependent verdict in a test's budget (its margin does not read the
responses yet), so the test trains on one order of one pair; whether the trained demo policy generalises is
measured on on-policy pairs in BENCHMARKS.md."""

from __future__ import annotations

import json

import pytest
import torch

from agentrl.rewards.critic_data import build_critic_examples
from agentrl.rewards.critic_prompt import CriticPromptConfig
from agentrl.rewards.engine_critic import EngineCritic
from agentrl.schemas.trajectory import Trajectory
from agentrl.train.critic_warmup import CriticWarmupConfig, run_critic_warmup

COMPACT = CriticPromptConfig(instructions="brief", rubric_detail="names", max_response_chars=200)


def _examples():
    from agentrl.rewards.rubrics import load_rubrics

    trajectories = []
    for g in range(2):
        for tid, answer, reward in (
            ("good", f"Order O{g} is closed.", 1.0),
            ("bad", "Sorry, it failed.", 0.0),
        ):
            trajectories.append(
                Trajectory(
                    id=f"{g}-{tid}",
                    task_id=f"t{g}",
                    group_id=f"O{g}",
                    messages=[
                        {"role": "user", "content": f"Please close order O{g}."},
                        {"role": "assistant", "content": answer},
                    ],
                    reward_details={"verifiable": reward},
                )
            )
    return build_critic_examples(trajectories, load_rubrics(), prompt=COMPACT)


TRANSCRIPTS = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], "tools": []}
]


def _signed_margins(checkpoint, examples):
    from model.checkpoint import load_checkpoint

    model, tok = load_checkpoint(checkpoint, dtype=torch.float32)
    critic = EngineCritic(engine=None, tokenizer=tok, max_prompt_tokens=4096)
    out = []
    with torch.no_grad():
        for ex in examples:
            logits_V = model(input_ids=torch.tensor([critic.prompt_ids(ex.messages)])).logits[0, -1]
            margin = float(logits_V[critic.letter_ids["A"]] - logits_V[critic.letter_ids["B"]])
            out.append(margin if ex.target == "A" else -margin)
    return out


@pytest.mark.parametrize("target", ["A", "B"])
def test_warmup_moves_the_margin_toward_the_verified_verdict(tiny_checkpoint, tmp_path, target):
    examples = [next(e for e in _examples() if e.target == target)]
    cfg = CriticWarmupConfig(steps=12, batch_size=2, lr=3e-3, ptx_beta=0.5, ptx_batch_size=1, logging_steps=4)
    result = run_critic_warmup(tiny_checkpoint, examples, TRANSCRIPTS, cfg, tmp_path / "warm")
    before = _signed_margins(tiny_checkpoint, examples)
    after = _signed_margins(result["checkpoint"], examples)
    assert result["examples"] == len(examples) and result["steps"] == 12
    assert after[0] > before[0] + 1.0 and after[0] > 0, (before, after)
    rows = [json.loads(line) for line in (tmp_path / "warm" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert all("loss/critic" in r and "loss/ptx" in r for r in rows)
    assert rows[-1]["loss/critic"] < 0.6931  # below log 2, where a margin of 0 sits


def test_no_example_that_fits_is_an_error(tiny_checkpoint, tmp_path):
    cfg = CriticWarmupConfig(steps=1, max_tokens=16)
    with pytest.raises(ValueError, match="fits 16 tokens"):
        run_critic_warmup(tiny_checkpoint, _examples(), TRANSCRIPTS, cfg, tmp_path / "warm")
