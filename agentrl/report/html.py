"""Build `<run_dir>/report/index.html` with one PNG per metric family from `<run_dir>/metrics.jsonl`.

Plots use matplotlib's Agg backend (no display needed). A figure is drawn only when its metrics exist, so a run
without a judge has no critic plot rather than an empty one. List-valued metrics (per-layer QK-Clip max logits,
per-layer expert load) are drawn one line per layer.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentrl.train.metrics import read_jsonl

# (file stem, title, y label, predicate on the metric name)
FIGURES: list[tuple[str, str, str, Any]] = [
    (
        "reward",
        "Reward (after budget penalty) per task type",
        "reward",
        lambda k: k.startswith("reward/") and k != "reward/judge_tokens",
    ),
    ("success", "Success rate per task type", "success", lambda k: k.startswith("success/")),
    ("eval", "Held-out evaluation", "value", lambda k: k.startswith("eval/")),
    ("temperature", "Sampling temperature (decay schedule)", "T", lambda k: k == "temperature"),
    ("budget", "Budget: truncation rate and budget use", "fraction", lambda k: k.startswith("budget/")),
    ("loss", "Loss", "loss", lambda k: k.startswith("loss/") and not k.endswith("_frac")),
    ("gap", "Train/inference log-prob gap", "|Δ log p|", lambda k: k.startswith("gap/")),
    ("routing", "MoE routing mismatch", "fraction of (token, layer)", lambda k: k.startswith("routing/")),
    (
        "qk_clip",
        "QK-Clip: max attention logit per layer",
        "S_max",
        lambda k: k == "qk_clip/max_logit_per_layer",
    ),
    ("qk_clip_heads", "QK-Clip: heads clipped per step", "heads", lambda k: k == "qk_clip/heads_clipped"),
    (
        "expert_load",
        "Expert load: max/mean tokens per expert, per MoE layer",
        "max/mean",
        lambda k: k.endswith("/max_over_mean_load"),
    ),
    (
        "critic",
        "Critic accuracy on held-out verifiable pairs",
        "accuracy",
        # Only the [0, 1] rates: the critic's counters (groups, buffer size, ...) would swamp the axis.
        lambda k: k.startswith("critic/heldout/") and ("accuracy" in k or "consistency" in k),
    ),
    (
        "weight_sync",
        "Weight-sync and step time",
        "seconds",
        lambda k: k in ("time/weight_sync_s", "time/step_s", "time/rollout_s", "time/train_s"),
    ),
    ("throughput", "Rollout throughput", "tokens/s", lambda k: k.startswith("throughput/")),
]


def metric_series(rows: list[dict[str, Any]], key: str) -> dict[str, tuple[list[float], list[float]]]:
    """name -> (steps, values); a list-valued metric becomes one series per index."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        if key not in row:
            continue
        value = row[key]
        items = (
            [(f"{key}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) else [(key, value)]
        )
        for name, v in items:
            if isinstance(v, int | float) and math.isfinite(v):
                xs, ys = out.setdefault(name, ([], []))
                xs.append(row["step"])
                ys.append(v)
    return out


# Figures whose points are labelled with another metric's value at the same step: the critic's held-out set grows
# during RL, so an accuracy read without its sample size misleads (4 examples at step 1, dozens later).
POINT_LABELS: dict[str, tuple[str, str]] = {"critic": ("critic/heldout/n", "n={:.0f}")}


def point_labels(rows: list[dict[str, Any]], key: str, fmt: str) -> dict[float, str]:
    return {row["step"]: fmt.format(row[key]) for row in rows if isinstance(row.get(key), int | float)}


def plot_series(
    path: Path,
    title: str,
    ylabel: str,
    series: dict[str, tuple[list[float], list[float]]],
    labels: dict[float, str] | None = None,
    decorate: Callable[[Any], None] | None = None,
) -> None:
    """One PNG of `series` (name -> (steps, values)); `labels` annotate the first series' points by step, and
    `decorate(ax)` adds what a caller draws on top (before the legend, so its labelled artists are listed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for name, (xs, ys) in sorted(series.items()):
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=name)
    if labels and series:
        xs, ys = series[sorted(series)[0]]
        for x, y in zip(xs, ys, strict=True):
            if x in labels:
                ax.annotate(
                    labels[x], (x, y), textcoords="offset points", xytext=(0, 5), fontsize=7, ha="center"
                )
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if decorate is not None:
        decorate(ax)
    if len(series) <= 10:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def figure_html(stem: str, title: str) -> str:
    """One report figure: `<stem>.png` next to the page, captioned `title`."""
    return (
        f'<figure id="{stem}"><img src="{stem}.png" alt="{html.escape(title)}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def build_report(run_dir: str | Path, title: str = "RL run") -> Path:
    """Write the report and return the path of index.html."""
    run_dir = Path(run_dir)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r if k not in ("step", "time")})
    sections = []
    for stem, fig_title, ylabel, wanted in FIGURES:
        series: dict[str, tuple[list[float], list[float]]] = {}
        for key in keys:
            if wanted(key):
                series.update(metric_series(rows, key))
        if not series:
            continue
        labels = point_labels(rows, *POINT_LABELS[stem]) if stem in POINT_LABELS else None
        plot_series(out / f"{stem}.png", fig_title, ylabel, series, labels)
        sections.append(figure_html(stem, fig_title))
    last = next((r for r in reversed(rows) if "reward/mean" in r), rows[-1] if rows else {})
    summary = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>"
        for k, v in sorted(last.items())
        if isinstance(v, float) and k != "time"
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1400px;margin:auto}}"
        "figure{display:inline-block;margin:8px}img{max-width:640px}td{padding:0 8px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len([r for r in rows if 'reward/mean' in r])} steps logged from "
        f"{html.escape(str(run_dir / 'metrics.jsonl'))}.</p>{''.join(sections) or '<p>No metrics logged.</p>'}"
        f"<h2>Last step</h2><table>{summary}</table></body></html>"
    )
    index = out / "index.html"
    index.write_text(page)
    return index
