"""The demo report: one HTML page a person can read without logs.

Top: held-out success and tool-call validity for the random-init model, after SFT and after RL (bar chart), the
SFT loss curve, and the critic's accuracy during RL with its SFT and final-RL end points on every held-out pair.
Below: every other RL figure from the RL run's own report (reward, temperature decay, truncation and budget,
QK-Clip max logits and clipped heads, expert load, weight-sync and step time); its in-loop critic curve is the one
drawn above.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

from agentrl.report.html import POINT_LABELS, figure_html, metric_series, plot_series, point_labels
from agentrl.train.metrics import read_jsonl


def _bars(path: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [("random init", "eval_base"), ("after SFT", "eval_sft"), ("after RL", "eval_rl")]
    present = [(label, results[key]) for label, key in stages if key in results]
    # the policy-as-critic on the same held-out verifiable pairs with the SFT and the RL weights
    critic = results.get("critic") or {}
    critic_at = {"after SFT": critic.get("accuracy_start"), "after RL": critic.get("accuracy_end")}
    bars = [
        ("success rate", [r["success"] for _, r in present]),
        ("tool-call validity", [r["tool_call_validity"] for _, r in present]),
    ]
    has_critic = any(v is not None for v in critic_at.values())
    if has_critic:
        bars.append(("critic accuracy", [critic_at.get(label) for label, _ in present]))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / len(bars)
    xs = range(len(present))
    for i, (name, values) in enumerate(bars):
        offset = (i - (len(bars) - 1) / 2) * width
        shown = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        ax.bar([x + offset for x, _ in shown], [v for _, v in shown], width, label=name)
        for x, v in shown:
            ax.text(x + offset, v + 0.01, f"{v:.2f}", ha="center", fontsize=8)
    ax.set_xticks(list(xs), [label for label, _ in present])
    ax.set_ylim(0, 1.1)
    title = f"Held-out tool_world tasks (n={present[0][1]['episodes'] if present else 0})"
    if has_critic:
        title += f", critic on held-out pairs (n={critic.get('heldout_examples', 0)})"
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _loss_points(metrics: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(metrics) if "loss" in r and "step" in r]


def _sft_loss(path: Path, run_dir: Path) -> bool:
    """Both SFT phases on one step axis: the short-context warm-up, then full transcripts."""
    phases = [
        ("short context (turn windows)", _loss_points(run_dir / "sft_short" / "metrics.jsonl")),
        ("full transcripts", _loss_points(run_dir / "sft" / "metrics.jsonl")),
    ]
    if not any(points for _, points in phases):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    offset = 0
    for label, points in phases:
        if points:
            ax.plot([offset + p[0] for p in points], [p[1] for p in points], label=label)
            offset += points[-1][0]
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title("SFT loss (TRL SFTTrainer + MuonClip)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _critic_curve(path: Path, run_dir: Path, critic: dict[str, Any], rl_steps: int) -> bool:
    """The in-loop critic accuracy (scored every few RL steps on the held-out pairs collected so far) with the
    SFT and the final RL weights on the final held-out set as end points: the in-loop curve alone stops at the
    last scoring step and mixes sample sizes, while the headline numbers are the end points."""
    start, end = critic.get("accuracy_start"), critic.get("accuracy_end")
    if start is None or end is None:
        return False
    rows = read_jsonl(run_dir / "rl" / "metrics.jsonl")
    key = "critic/heldout/accuracy"

    def end_points(ax: Any) -> None:
        label = f"SFT and final RL weights, all {critic.get('heldout_examples', 0)} held-out examples"
        ax.plot([0, rl_steps], [start, end], "*", markersize=11, color="tab:red", label=label)
        for x, y in ((0, start), (rl_steps, end)):
            ax.annotate(
                f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, -13), fontsize=8, ha="center"
            )
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_ylim(0, 1.05)

    in_loop = metric_series(rows, key).get(key)
    rule = critic.get("verdict")
    plot_series(
        path,
        f"Critic accuracy on held-out verifiable pairs{f' ({rule})' if rule else ''}",
        "accuracy",
        {"during RL (held-out pairs so far)": in_loop} if in_loop else {},
        point_labels(rows, *POINT_LABELS["critic"]),
        decorate=end_points,
    )
    return True


def build_demo_report(run_dir: Path, summary: dict[str, Any], results: dict[str, Any]) -> Path:
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    if any(k in results for k in ("eval_base", "eval_sft", "eval_rl")):
        _bars(out / "success.png", results)
        figures.append(
            ("success", "Success rate, tool-call validity and critic accuracy: random init, SFT, RL")
        )
    if _sft_loss(out / "sft_loss.png", run_dir):
        figures.append(("sft_loss", "SFT loss"))
    critic_drawn = _critic_curve(
        out / "critic.png", run_dir, results.get("critic") or {}, (results.get("rl") or {}).get("steps", 0)
    )
    if critic_drawn:
        figures.append(
            ("critic", "Critic accuracy: during RL, and the SFT and final RL weights on every held-out pair")
        )
    rl_report = run_dir / "rl" / "report"
    if rl_report.is_dir():
        for png in sorted(rl_report.glob("*.png")):
            if critic_drawn and png.stem == "critic":
                continue  # drawn above with its end points
            shutil.copy(png, out / f"rl_{png.name}")
            figures.append((f"rl_{png.stem}", f"RL: {png.stem.replace('_', ' ')}"))
    body = "".join(figure_html(stem, title) for stem, title in figures)
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
        for k, v in summary.items()
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>agentrl demo report</title>"
        "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}figure{display:inline-block;margin:8px}"
        "img{max-width:640px}td{padding:0 8px;font-family:monospace}</style></head><body>"
        "<h1>agentrl demo: a tiny K2 MoE through synth → SFT → RL on tool_world</h1>"
        f"{body}<h2>Summary</h2><table>{rows}</table>"
        # Lets a headless browser test count images that failed to decode (tests/demo/test_demo_quick.py).
        "<script>window.addEventListener('load',()=>{document.body.dataset.images=document.images.length;"
        "document.body.dataset.brokenImages=[...document.images].filter(i=>!i.complete||i.naturalWidth===0)"
        ".length;});</script></body></html>"
    )
    index = out / "index.html"
    index.write_text(page)
    return index
