"""`agentrl bench qkclip`: K2's QK-Clip figure at toy scale (K2 §2.1, Fig. 2; k2.md §1.4).

Trains the k2-tiny model twice from the same seed on the same fixed batch (a copy task: each sequence repeats its
first half, which rewards sharp attention) with Muon at an aggressive lr (0.05, 250x K2's 2e-4). Without clipping
the per-head max pre-softmax logit grows far past tau; with QK-Clip every step's clip brings each head back to
tau. tau is K2's 100 in the full run; `quick` lowers it to 20 so fewer steps show the effect.

What is measured: S_max of each step's training forward (weights W_{t-1}, before that step's clip), as K2 plots
it. Under clipping that value can exceed tau by about one step's growth: the clip at step t-1 used the logits
measured *before* that step's update, and clipping a layer also changes the inputs of the layers after it (K2's
order; the lag is negligible at K2's lr, visible at ours). `max_logit_clip_last_quarter` is the median of the
per-step maxima over the last quarter of the clipped run, i.e. where the cap has settled.

Runs on one CPU thread (restored afterwards). Writes runs/bench/qkclip.png: max logit vs step for both runs, and both loss curves.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

LR = 0.05
VOCAB = 256


def _copy_batch(batch: int, half: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    first = torch.randint(0, VOCAB, (batch, half), generator=gen)
    return torch.cat([first, first], dim=1)


def _train(clip: bool, tau: float, steps: int, ids: torch.Tensor, seed: int) -> dict[str, list[float]]:
    from transformers import DeepseekV3ForCausalLM

    from agentrl.optim import MuonClipConfig, build_muonclip
    from model.maxlogit import MaxLogitTracker
    from model.presets import build_config

    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(build_config("k2-tiny", vocab_size=VOCAB))
    tracker = MaxLogitTracker(model)
    tracker.enable()
    config = MuonClipConfig(lr=LR, weight_decay=0.0, qk_clip=clip, qk_clip_tau=tau)
    optimizer = build_muonclip(model, config, tracker=tracker)
    out: dict[str, list[float]] = {"loss": [], "max_logit": [], "heads_clipped": []}
    for _ in range(steps):
        tracker.reset()  # QK-Clip resets it too; the no-clip run needs it here
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        smax = float(tracker.smax().max())  # this step's forward, before the optimizer step resets it
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out["loss"].append(loss.item())
        out["max_logit"].append(smax)
        out["heads_clipped"].append(optimizer.last_stats.get("qk_clip/heads_clipped", 0))
    return out


def _plot(no_clip: dict[str, list[float]], clipped: dict[str, list[float]], tau: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_logit, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    steps = range(1, len(no_clip["max_logit"]) + 1)
    ax_logit.plot(steps, no_clip["max_logit"], label="Muon (no clip)", color="tab:red")
    ax_logit.plot(steps, clipped["max_logit"], label="MuonClip", color="tab:blue")
    ax_logit.axhline(tau, ls="--", color="gray", label=f"tau = {tau:g}")
    ax_logit.set(
        xlabel="step", ylabel="max attention logit (all heads)", title="Max logit per step", yscale="log"
    )
    ax_logit.legend()
    ax_loss.plot(steps, no_clip["loss"], label="Muon (no clip)", color="tab:red")
    ax_loss.plot(steps, clipped["loss"], label="MuonClip", color="tab:blue")
    ax_loss.set(xlabel="step", ylabel="training loss", title="Loss (k2-tiny, copy task)")
    ax_loss.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(quick: bool = False, out_dir: str = "runs/bench") -> dict[str, Any]:
    tau, steps, batch, half = (20.0, 25, 8, 16) if quick else (100.0, 50, 8, 32)
    ids = _copy_batch(batch, half, seed=1)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machines: oversubscribed threads are 10x slower, not faster
    try:
        no_clip = _train(False, tau, steps, ids, seed=0)
        clipped = _train(True, tau, steps, ids, seed=0)
    finally:
        torch.set_num_threads(threads)
    png = Path(out_dir) / "qkclip.png"
    _plot(no_clip, clipped, tau, png)
    return {
        "tau": tau,
        "steps": steps,
        "lr": LR,
        "max_logit_no_clip": max(no_clip["max_logit"]),
        "max_logit_clip": max(clipped["max_logit"]),
        "max_logit_clip_last_quarter": statistics.median(clipped["max_logit"][-max(1, steps // 4) :]),
        "final_loss_no_clip": no_clip["loss"][-1],
        "final_loss_clip": clipped["loss"][-1],
        "heads_clipped_total": int(sum(clipped["heads_clipped"])),
        "first_step_over_tau_no_clip": next(
            (i + 1 for i, v in enumerate(no_clip["max_logit"]) if v > tau), None
        ),
        "png": str(png),
        "seconds": round(time.perf_counter() - start, 1),
    }
