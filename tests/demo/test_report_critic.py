"""The demo report's critic figure: the in-loop curve plus the SFT and final RL weights on every held-out pair."""

from __future__ import annotations

import json

from agentrl.demo.report import build_demo_report
from agentrl.report.html import build_report


def _rl_run(run_dir):
    rows = [
        {"step": 1, "reward/mean": 0.1, "critic/heldout/accuracy": 0.5, "critic/heldout/n": 4.0},
        {"step": 2, "reward/mean": 0.2},
        {"step": 3, "reward/mean": 0.3, "critic/heldout/accuracy": 0.75, "critic/heldout/n": 8.0},
    ]
    (run_dir / "rl").mkdir(parents=True)
    (run_dir / "rl" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report(run_dir / "rl")  # the RL loop's own report, with its in-loop critic.png


def test_critic_figure_has_the_end_points(tmp_path):
    _rl_run(tmp_path)
    results = {
        "rl": {"steps": 4},
        "critic": {
            "verdict": "swap_debiased",
            "accuracy_start": 0.4,
            "accuracy_end": 0.9,
            "heldout_examples": 10,
        },
    }
    page = build_demo_report(tmp_path, {"success_rl": 0.5}, results).read_text()
    assert 'id="critic"' in page and (tmp_path / "report" / "critic.png").stat().st_size > 5000
    # the in-loop-only copy would be a second, incomplete critic figure
    assert 'id="rl_critic"' not in page and 'id="rl_reward"' in page


def test_without_end_points_the_in_loop_figure_stays(tmp_path):
    _rl_run(tmp_path)
    page = build_demo_report(tmp_path, {}, {"rl": {"steps": 4}, "critic": {"heldout_pairs": 0}}).read_text()
    assert 'id="rl_critic"' in page and 'id="critic"' not in page
