"""The report labels the critic's accuracy points with the held-out set's size (it grows during RL)."""

from __future__ import annotations

import json

from agentrl.report.html import build_report, point_labels


def test_critic_points_carry_the_heldout_size(tmp_path):
    rows = [
        {"step": 1, "reward/mean": 0.1, "critic/heldout/accuracy": 1.0, "critic/heldout/n": 4.0},
        {"step": 2, "reward/mean": 0.2},
        {"step": 6, "reward/mean": 0.3, "critic/heldout/accuracy": 0.75, "critic/heldout/n": 16.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert point_labels(rows, "critic/heldout/n", "n={:.0f}") == {1: "n=4", 6: "n=16"}
    index = build_report(tmp_path)
    assert (
        'src="critic.png"' in index.read_text() and (tmp_path / "report" / "critic.png").stat().st_size > 5000
    )
