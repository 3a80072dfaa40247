"""The demo's critic warm-start data: synth critic pairs become SFT records in exactly the RL critic's prompt, both
orders, labelled by the verifiable reward; the phase is skipped when the critic is off."""

import json

from agentrl.demo.config import DemoConfig
from agentrl.demo.pipeline import DemoContext, _critic_sft_records, sft_checkpoint, stage_sft_critic
from agentrl.rewards.critic_prompt import build_critic_messages
from agentrl.rewards.rubrics import load_rubrics
from agentrl.synth.pipeline import run_synth


def test_records_use_the_rl_critic_prompt_and_both_orders(tmp_path):
    run_synth(
        {
            "out_dir": str(tmp_path / "synth"),
            "target": 30,
            "tasks": {"heldout": 2, "rl": 2},
            "critic_pairs": 8,
        },
        echo=None,
    )
    cfg = DemoConfig(run_dir=str(tmp_path))
    path = _critic_sft_records(DemoContext(cfg=cfg, run_dir=tmp_path))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    pairs = [
        json.loads(line) for line in (tmp_path / "synth" / "critic_pairs.jsonl").read_text().splitlines()
    ]
    assert len(records) == 2 * len(pairs) == 16
    rubrics = load_rubrics()
    for pair, (first, second) in zip(pairs, zip(records[::2], records[1::2], strict=True), strict=True):
        good, bad = pair["good"]["messages"], pair["bad"]["messages"]
        rub = rubrics.for_task(pair["task_id"], pair["domain"])
        shown = {  # the good sample shown first -> [[A]], shown second -> [[B]]
            "[[A]]": build_critic_messages(good[:2], _traj(good), _traj(bad), rub, cfg.critic.prompt),
            "[[B]]": build_critic_messages(good[:2], _traj(bad), _traj(good), rub, cfg.critic.prompt),
        }
        for record in (first, second):
            verdict = record["messages"][-1]
            assert verdict["role"] == "assistant"
            assert record["messages"][:-1] == shown[verdict["content"]]
        assert {first["messages"][-1]["content"], second["messages"][-1]["content"]} == {"[[A]]", "[[B]]"}
        user = good[1]["content"]
        assert user in first["messages"][1]["content"]  # the request the verdict depends on is in view


def _traj(messages):
    from agentrl.schemas.trajectory import Trajectory

    return Trajectory(id="x", task_id="t", messages=messages)


def test_phase_is_skipped_without_the_critic(tmp_path):
    ctx = DemoContext(cfg=DemoConfig(run_dir=str(tmp_path), critic={"enabled": False}), run_dir=tmp_path)
    ctx.results["sft"] = {"checkpoint": "sft/final"}
    stage_sft_critic(ctx)
    assert "sft_critic" not in ctx.results and sft_checkpoint(ctx.results) == "sft/final"
    ctx.results["sft_critic"] = {"checkpoint": "sft_critic/final"}
    assert sft_checkpoint(ctx.results) == "sft_critic/final"


def test_phase_without_synth_pairs_names_the_setting(tmp_path):
    import pytest

    from agentrl.errors import AgentRLError

    ctx = DemoContext(cfg=DemoConfig(run_dir=str(tmp_path), sft_critic={"max_steps": 5}), run_dir=tmp_path)
    ctx.results["sft"] = {"checkpoint": "sft/final"}
    with pytest.raises(AgentRLError, match="synth.critic_pairs"):
        stage_sft_critic(ctx)
