"""The demo's RL stage gets a PTX set: the synth SFT records as they are (shortcut demonstrations included)."""

from __future__ import annotations

import json

from agentrl.demo.config import DemoConfig
from agentrl.demo.stages import ptx_records
from agentrl.synth.pipeline import run_synth


def test_demo_defaults_pair_shortcut_demonstrations_with_ptx():
    cfg = DemoConfig()
    assert cfg.synth.agent.shortcut_rate > 0 and not cfg.synth.judge.require_tool_pattern
    assert cfg.rl.ptx.beta > 0 and cfg.ptx_records > 0


def test_ptx_records_are_the_sft_records_in_order(tmp_path):
    from agentrl.train.ptx import ptx_examples_from_records
    from model.tokenizer import default_corpus, train_tokenizer

    run_synth(
        {
            "target": 40,
            "out_dir": str(tmp_path),
            "tasks": {"heldout": 4, "rl": 4},
            "agent": {"shortcut_rate": 0.5},
            "judge": {"require_tool_pattern": False},
        },
        echo=None,
    )
    path = tmp_path / "trajectories.jsonl"
    source = [json.loads(line) for line in path.read_text().splitlines()]
    records = ptx_records(path, 25)
    assert len(records) == 25
    assert [r["messages"] for r in records] == [s["messages"] for s in source[:25]]
    assert all(set(r) == {"messages", "tools"} for r in records)
    assert any("shortcut" in s["provenance"]["mistakes"] for s in source[:25])  # not curated away
    tok = train_tokenizer(default_corpus(), vocab_size=512)
    examples = ptx_examples_from_records(records, tok, max_length=4096)
    assert len(examples) == 25 and all(0 < sum(e.loss_mask) < len(e.token_ids) for e in examples)
