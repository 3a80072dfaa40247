"""`agentrl eval` reports judge and critic scores next to success (issue #7), against real servers/engines."""

from __future__ import annotations

import pytest

from agentrl.errors import ConfigError


def test_critic_samples_of_one_is_rejected_naming_the_field():
    from agentrl.config import load_config
    from agentrl.eval.stage import EvalStageConfig

    with pytest.raises(ConfigError, match="critic_samples"):
        load_config(EvalStageConfig, [], ["critic_samples=1"])


@pytest.fixture(scope="module")
def synth_tasks(tmp_path_factory):
    from agentrl.synth.config import SynthConfig
    from agentrl.synth.pipeline import run_synth

    out = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig.model_validate({"out_dir": str(out), "target": 40, "tasks": {"heldout": 6, "rl": 6}})
    run_synth(cfg, echo=None)
    return str(out / "tasks_heldout.jsonl")


@pytest.mark.slow
def test_eval_reports_judge_and_critic_scores(vllm_server_url, tiny_checkpoint, synth_tasks, tmp_path):
    """The tiny random policy fails every task, so the critic finds no pair with a known winner and says so
    (None, 0 pairs); the judge (the same checkpoint behind vLLM, guided JSON) scores every trajectory."""
    import httpx

    from agentrl.eval.stage import EvalStageConfig, run_eval_stage

    model = httpx.get(f"{vllm_server_url}/models", timeout=10).json()["data"][0]["id"]
    # One short rubric: K2's full rubric texts overflow the tiny judge's 1024-token context (HTTP 400 = abstain).
    rubric = tmp_path / "short.yaml"
    rubric.write_text("rubrics:\n  - {id: core.brief, name: Brief, kind: core, description: Be brief.}\n")
    cfg = EvalStageConfig(
        rubric_paths=[str(rubric)],
        checkpoint=tiny_checkpoint,
        tasks=synth_tasks,
        limit=3,
        max_tokens=24,
        judge={"base_url": vllm_server_url, "model": model, "max_tokens": 256, "timeout_s": 300},
        critic_samples=2,
    )
    summary = run_eval_stage(cfg)
    assert summary["episodes"] == 3 and summary["success"] == 0.0
    assert summary["judge_scored"] + summary["judge_abstained"] == 3
    assert summary["judge_scored"] >= 1, summary["judge_abstentions"]
    assert 0.0 <= summary["judge_mean"] <= 1.0
    assert summary["judge_usage"]["prompt_tokens"] > 0
    assert summary["critic_pairs"] == 0 and summary["critic_accuracy"] is None
