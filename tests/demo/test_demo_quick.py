"""`agentrl demo --quick`: every stage completes, metrics are sane and finite, and the report renders in Chromium."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

KEYS = (
    "success_base",
    "success_sft",
    "success_rl",
    "tool_call_validity_sft",
    "tool_call_validity_rl",
    "critic_accuracy_start",
    "critic_accuracy_end",
    "max_attention_logit",
    "wall_s",
    "report_path",
)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "agentrl.cli.main", "demo", "--quick", "--json", f"run_dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_stage_completes_with_finite_metrics(quick_demo):
    for key in KEYS:
        assert key in quick_demo, key
    for key in KEYS[:5]:
        value = quick_demo[key]
        assert value is not None and math.isfinite(value) and 0.0 <= value <= 1.0, (key, value)
    for key in ("critic_accuracy_start", "critic_accuracy_end"):  # None when no held-out pair had a winner
        value = quick_demo[key]
        assert value is None or 0.0 <= value <= 1.0, (key, value)
    assert math.isfinite(quick_demo["max_attention_logit"]) and quick_demo["max_attention_logit"] > 0
    assert set(quick_demo["stages"]) >= {"synth", "sft", "eval base", "eval sft", "rl", "eval rl"}
    assert quick_demo["synth_accepted"] >= 100
    assert math.isfinite(quick_demo["sft_train_loss"])
    assert quick_demo["weight_sync_s"] is not None and quick_demo["weight_sync_s"] > 0


@pytest.mark.slow
def test_critic_pairs_ride_in_sft_and_the_heldout_margins_reproduce_the_accuracy(quick_demo):
    """--quick mixes the synth critic pairs into `sft` (record_mean loss) and writes the held-out critic pairs with
    both checkpoints' margins; the swap-debiased accuracy recomputed from those margins is the reported one."""
    run_dir = Path(quick_demo["run_dir"])
    results = json.loads((run_dir / "summary.json").read_text())["results"]
    assert results["sft"]["data_critic_records"] > 0
    path = run_dir / "rl" / "critic_heldout.jsonl"
    if quick_demo["critic_accuracy_end"] is None:
        return  # no held-out pair had a winner in this tiny run
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    by_pair = {}
    for row in rows:
        by_pair.setdefault(row["pair_key"], []).append(row)
    for key, reported in (("margin_start", "critic_accuracy_start"), ("margin_end", "critic_accuracy_end")):
        correct = 0
        for row in rows:
            partner = [r for r in by_pair[row["pair_key"]] if r is not row]
            s = row[key] - partner[0][key] if partner else row[key]
            correct += ("A" if s > 0 else "B" if s < 0 else "tie") == row["target"]
        assert correct / len(rows) == pytest.approx(quick_demo[reported]), key


@pytest.mark.slow
def test_report_renders_in_headless_chromium(quick_demo, tmp_path):
    chromium = require_tool("chromium")
    report = quick_demo["report_path"]
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            f"file://{report}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    images = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken-images="(\d+)"', dom)
    assert images and broken, dom[:2000]
    assert int(images.group(1)) >= 3
    assert int(broken.group(1)) == 0
    for figure in ("success", "sft_loss", "rl_reward", "rl_temperature", "rl_eval"):
        assert f'id="{figure}"' in dom, figure
