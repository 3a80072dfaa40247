"""The README's demo screenshot: nine of a demo report's PNGs in one image.

Usage: `python scripts/demo_montage.py runs/demo/report docs/img/demo_report.png`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

PANELS = [
    "success.png",
    "sft_loss.png",
    "rl_success.png",
    "rl_reward.png",
    "rl_temperature.png",
    "critic.png",
    "rl_qk_clip.png",
    "rl_expert_load.png",
    "rl_throughput.png",
]
# reports from before the demo drew its own critic figure (in-loop curve + end points) only have the RL one
FALLBACK = {"critic.png": "rl_critic.png"}


def montage(report_dir: Path, out: Path, cols: int = 3) -> list[str]:
    panels = [n if (report_dir / n).exists() else FALLBACK.get(n, n) for n in PANELS]
    names = [n for n in panels if (report_dir / n).exists()]
    if not names:
        raise SystemExit(f"no report PNGs in {report_dir}")
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6.4, rows * 3.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):
        ax.imshow(mpimg.imread(report_dir / name))
    fig.tight_layout()
    fig.savefig(out, dpi=60)
    return names


if __name__ == "__main__":
    print(montage(Path(sys.argv[1]), Path(sys.argv[2])))
