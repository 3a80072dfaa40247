"""SFT stage: assistant-only masking token by token, clear errors on broken data, and exact resume."""

import json

import pytest
import torch

from agentrl.errors import AgentRLError
from agentrl.train.sft import SFTStageConfig, read_jsonl, run_sft, tokenize_records
from model.chat_format import GENERATION_PROMPT, render_assistant_body, render_messages


def _strip_bodies(record, full):
    for m in record["messages"]:
        if m["role"] == "assistant":
            full = full.replace(GENERATION_PROMPT + render_assistant_body(m), GENERATION_PROMPT, 1)
    return full


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    from agentrl.synth.pipeline import run_synth

    out = tmp_path_factory.mktemp("synth")
    run_synth({"out_dir": str(out), "target": 48, "tasks": {"heldout": 4, "rl": 4}}, echo=None)
    return out / "trajectories.jsonl"


def test_assistant_only_mask_token_by_token(synth_data, tiny_checkpoint):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    records = read_jsonl(synth_data)[:8]
    columns, stats = tokenize_records(records, tok, max_length=4096)
    assert stats["dropped_too_long"] == 0
    for record, ids, mask in zip(records, columns["input_ids"], columns["assistant_masks"], strict=True):
        assert len(ids) == len(mask)
        trained = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
        expected = "".join(render_assistant_body(m) for m in record["messages"] if m["role"] == "assistant")
        assert trained == expected
        # everything else (tool declarations, system, user and tool-result turns, turn headers) is masked
        untrained = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
        full = render_messages(record["messages"], tools=record.get("tools"))
        assert untrained == _strip_bodies(record, full)


def test_broken_jsonl_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": []}\n{"messages": [\n')
    with pytest.raises(AgentRLError, match=r"bad\.jsonl:2: broken JSONL line"):
        read_jsonl(path)
    path.write_text('{"nope": 1}\n')
    with pytest.raises(AgentRLError, match=r"bad\.jsonl:1: record must be an object with a 'messages' list"):
        read_jsonl(path)


def test_over_long_records_are_dropped_and_counted(synth_data, tiny_checkpoint):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    records = read_jsonl(synth_data)[:6]
    with pytest.raises(AgentRLError, match="no usable SFT records"):
        tokenize_records(records, tok, max_length=16)


@pytest.mark.slow
def test_sft_trains_and_resume_matches_uninterrupted(synth_data, tiny_checkpoint, tmp_path):
    from safetensors.torch import load_file

    def cfg(out, steps, resume=False):
        return SFTStageConfig(
            data=str(synth_data),
            init=tiny_checkpoint,
            out_dir=str(out),
            max_steps=steps,
            batch_size=4,
            lr=3e-3,
            save_steps=2,
            logging_steps=1,
            resume=resume,
            warmup_ratio=0.0,
            lr_scheduler="constant",
        )

    full = run_sft(cfg(tmp_path / "full", 4), progress=False)
    assert full["steps"] == 4 and full["train_loss"] > 0
    run_sft(cfg(tmp_path / "cut", 2), progress=False)
    resumed = run_sft(cfg(tmp_path / "cut", 4, resume=True), progress=False)
    assert resumed["resumed"] and resumed["steps"] == 4
    a = load_file(f"{full['checkpoint']}/model.safetensors")
    b = load_file(f"{resumed['checkpoint']}/model.safetensors")
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst == 0.0, f"resumed weights differ from the uninterrupted run by {worst}"
    logged = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.slow
def test_gradient_checkpointing_changes_no_weight(synth_data, tiny_checkpoint, tmp_path):
    """Off by default (TRL turns it on): recomputing activations must give the same update bit for bit, MoE routing
    included, so turning it off is a pure speed-up."""
    from safetensors.torch import load_file

    weights = {}
    for flag in (True, False):
        cfg = SFTStageConfig(
            data=str(synth_data),
            init=tiny_checkpoint,
            out_dir=str(tmp_path / str(flag)),
            max_steps=2,
            batch_size=4,
            gradient_checkpointing=flag,
        )
        weights[flag] = load_file(f"{run_sft(cfg, progress=False)['checkpoint']}/model.safetensors")
    worst = max((weights[True][k] - weights[False][k]).abs().max().item() for k in weights[True])
    assert worst < 1e-6


def test_loss_on_all_trains_every_token(synth_data, tiny_checkpoint):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    records = read_jsonl(synth_data)[:4]
    assistant, _ = tokenize_records(records, tok, max_length=4096)
    everything, stats = tokenize_records(records, tok, max_length=4096, loss_on="all")
    assert everything["input_ids"] == assistant["input_ids"]
    assert all(all(m) for m in everything["assistant_masks"])
    assert not all(all(m) for m in assistant["assistant_masks"])
    assert stats["loss_tokens"] == stats["tokens"]


def test_turn_windows_context_trains_on_one_record_per_assistant_turn(synth_data, tiny_checkpoint, tmp_path):
    from agentrl.train.turn_windows import turn_windows

    records = read_jsonl(synth_data)
    windows = list(turn_windows(records))
    assert len(windows) == sum(m["role"] == "assistant" for r in records for m in r["messages"])
    out = run_sft(
        SFTStageConfig(
            data=str(synth_data),
            init=tiny_checkpoint,
            out_dir=str(tmp_path / "short"),
            context="turn_windows",
            max_steps=1,
            batch_size=2,
        ),
        progress=False,
    )
    assert out["data_records"] == len(windows)
    assert out["steps"] == 1 and out["train_loss"] > 0


def test_critic_records_train_only_the_verdict_whatever_loss_on_says(tmp_path, tiny_checkpoint):
    """The critic warm-start mix: critic records keep their shape (no turn windows) and their loss mask covers the
    verdict turn and nothing else, even in a loss_on=all, turn-windows phase; the transcripts keep theirs."""
    from transformers import AutoTokenizer

    from agentrl.rewards.critic_data import examples_from_pairs
    from agentrl.rewards.rubrics import load_rubrics
    from agentrl.synth.pipeline import run_synth
    from agentrl.train.sft import build_columns
    from agentrl.train.turn_windows import turn_windows

    run_synth(
        {"out_dir": str(tmp_path), "target": 24, "tasks": {"heldout": 2, "rl": 2}, "critic_pairs": 6},
        echo=None,
    )
    pairs = [json.loads(line) for line in (tmp_path / "critic_pairs.jsonl").read_text().splitlines()]
    examples = examples_from_pairs(pairs, load_rubrics())
    assert len(examples) == 2 * len(pairs) and {e.target for e in examples} == {"A", "B"}
    critic_path = tmp_path / "critic.jsonl"
    critic_path.write_text("".join(json.dumps(e.sft_record()) + "\n" for e in examples))
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    cfg = SFTStageConfig(
        data=str(tmp_path / "trajectories.jsonl"),
        loss_on="all",
        context="turn_windows",
        max_length=4096,
        critic_data=str(critic_path),
        critic_max_length=4096,
    )
    columns, stats = build_columns(cfg, tok)
    windows = len(list(turn_windows(read_jsonl(cfg.data))))
    assert stats["records"] == windows and stats["critic_records"] == len(examples)
    assert len(columns["input_ids"]) == windows + len(examples)
    assert all(all(m) for m in columns["assistant_masks"][:windows])  # loss_on=all for the transcripts
    critic = zip(columns["input_ids"][windows:], columns["assistant_masks"][windows:], examples, strict=True)
    for ids, mask, example in critic:
        trained = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
        verdict = example.sft_record()["messages"][-1]
        assert trained == render_assistant_body(verdict) and f"[[{example.target}]]" in trained
        assert stats["critic_loss_tokens"] < stats["critic_tokens"] / 20
