"""`agentrl bench optim`: MuonClip against torch's optimizers on the k2-tiny model (issue 3 targets).

- `muon_vs_torch_max_abs_diff`: max |W_ours - W_torch| after a few steps of MuonClip's Muon half vs
  `torch.optim.Muon(adjust_lr_fn="match_rms_adamw")` on the model's 2-D matrices, same grads (target: <= 1e-6).
- `step_time_ratio_vs_torch`: one MuonClip step (Muon + AdamW + QK-Clip, bf16 Newton-Schulz like torch) over
  the parameters torch can take (everything but the 3-D expert stacks) / torch.optim.Muon + torch.optim.AdamW
  over the same parameters (target: <= 1.2). `step_time_ratio_vs_torch_auto` uses our default `ns_dtype="auto"`
  instead (fp32 on CPU, where bf16 matmuls have no fast path), for information.
- `expert_batched_speedup`: Muon on the fused expert stacks (Newton-Schulz batched over experts, gate and up
  split) / the same update as a per-expert loop of 2-D matrices (target: >= 3).
- `qk_tracking_overhead`: forward time with `MaxLogitTracker` on / plain sdpa, minus 1 (target: <= 0.10).

Times are medians over repeats, with the two sides interleaved so machine noise hits both. Runs on one CPU
thread unless CUDA is available: the development machines are shared and oversubscribed threads make every
ratio meaningless; the previous thread count is restored afterwards.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _interleaved_medians(fns: list[Callable[[], Any]], repeats: int, device: torch.device) -> list[float]:
    """Median seconds of each function, called round-robin after one warm-up call each."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def _tiny_model(device: torch.device):
    from transformers import DeepseekV3ForCausalLM

    from model.presets import build_config

    torch.manual_seed(0)
    return DeepseekV3ForCausalLM(build_config("k2-tiny")).to(device)


def _set_grads(params: list[torch.Tensor], seed: int) -> None:
    gen = torch.Generator(device=params[0].device).manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)


def _torch_parity(device: torch.device, steps: int) -> float:
    from agentrl.optim import MuonClip, build_param_groups

    model = _tiny_model(device)
    mats = [
        p
        for g in build_param_groups(model)
        if g["kind"] == "muon" and g["chunks"] == 1
        for p in g["params"]
        if p.ndim == 2
    ]
    ours = [torch.nn.Parameter(p.detach().clone()) for p in mats]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in mats]
    opt = MuonClip([{"params": ours, "kind": "muon"}], lr=0.02, ns_dtype="bfloat16")
    ref = torch.optim.Muon(theirs, lr=0.02, adjust_lr_fn="match_rms_adamw")
    for step in range(steps):
        _set_grads(ours, seed=step)
        _set_grads(theirs, seed=step)
        opt.step()
        ref.step()
    return max((p - q).abs().max().item() for p, q in zip(ours, theirs, strict=True))


def _step_time_ratios(device: torch.device, repeats: int) -> tuple[float, float]:
    """(MuonClip with bf16 NS / torch, MuonClip with ns_dtype="auto" / torch) on the non-expert parameters."""
    from agentrl.optim import MuonClip, QKClip, build_param_groups
    from model.maxlogit import MaxLogitTracker

    model = _tiny_model(device)
    groups = [
        g for g in build_param_groups(model) if all(p.ndim <= 2 for p in g["params"])
    ]  # no expert stacks
    params = [p for g in groups for p in g["params"]]
    tracker = MaxLogitTracker(model)
    heads = tracker.attn_modules[0].num_heads
    smax_LH = torch.linspace(0.5, 2.0, len(tracker.attn_modules) * heads).view(
        -1, heads
    )  # clips about 2/3 of heads
    # Copies of the group dicts: Optimizer.add_param_group writes its defaults into the dict it is given.
    ours = {
        dtype: MuonClip([dict(g) for g in groups], lr=1e-3, ns_dtype=dtype, qk_clip=QKClip(tracker, tau=1.0))
        for dtype in ("bfloat16", "auto")
    }

    def ours_step(dtype: str) -> None:
        tracker.set_smax(smax_LH)  # as if this step's forward had recorded these maxima
        ours[dtype].step()

    mats = [p for g in groups if g["kind"] == "muon" for p in g["params"]]
    vecs = [p for g in groups if g["kind"] == "adamw" for p in g["params"]]
    torch_muon = torch.optim.Muon(mats, lr=1e-3, adjust_lr_fn="match_rms_adamw")
    torch_adamw = torch.optim.AdamW(vecs, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)

    def torch_step() -> None:
        torch_muon.step()
        torch_adamw.step()

    _set_grads(params, seed=0)
    t_bf16, t_auto, t_torch = _interleaved_medians(
        [lambda: ours_step("bfloat16"), lambda: ours_step("auto"), torch_step], repeats, device
    )
    return t_bf16 / t_torch, t_auto / t_torch


def _expert_speedup(device: torch.device, repeats: int) -> tuple[float, float, float]:
    from agentrl.optim import MuonClip, build_param_groups

    model = _tiny_model(device)
    stacks = [
        g for g in build_param_groups(model) if g["name"] in ("muon_experts_gate_up", "muon_experts_down")
    ]
    batched = MuonClip(stacks, lr=1e-3)
    # The same matrices as separate 2-D parameters (what a per-expert implementation steps one by one).
    pieces = [
        torch.nn.Parameter(m.detach().clone())
        for g in stacks
        for p in g["params"]
        for m in p.reshape(p.shape[0] * g["chunks"], p.shape[1] // g["chunks"], p.shape[2])
    ]
    looped = MuonClip([{"params": pieces, "kind": "muon"}], lr=1e-3)
    _set_grads([p for g in stacks for p in g["params"]], seed=0)
    _set_grads(pieces, seed=1)
    t_batched, t_looped = _interleaved_medians([batched.step, looped.step], repeats, device)
    return t_looped / t_batched, t_batched, t_looped


def _tracking_overhead(device: torch.device, repeats: int, seq: int) -> float:
    from model.maxlogit import MaxLogitTracker

    model = _tiny_model(device).eval()
    ids = torch.randint(0, model.config.vocab_size, (4, seq), generator=torch.Generator().manual_seed(0)).to(
        device
    )
    tracker = MaxLogitTracker(model, track_no_grad=True)

    def forward(track: bool) -> None:
        if track:
            tracker.enable()
            tracker.reset()
        else:
            tracker.disable()
        with torch.no_grad():
            model(input_ids=ids)

    t_track, t_sdpa = _interleaved_medians([lambda: forward(True), lambda: forward(False)], repeats, device)
    tracker.disable()
    return t_track / t_sdpa - 1.0


def run(quick: bool = False) -> dict[str, Any]:
    device = _device()
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        repeats = 3 if quick else 5
        # bf16 matmuls have no fast path on most CPUs (10-35x slower than fp32 on the dev box), so the two
        # bf16-vs-torch measurements get fewer repeats there.
        bf16_repeats = repeats if device.type == "cuda" else (1 if quick else 3)
        speedup, t_batched, t_looped = _expert_speedup(device, repeats)
        ratio_bf16, ratio_auto = _step_time_ratios(device, bf16_repeats)
        result = {
            "muon_vs_torch_max_abs_diff": _torch_parity(device, steps=1 if quick else 2),
            "step_time_ratio_vs_torch": ratio_bf16,
            "step_time_ratio_vs_torch_auto": ratio_auto,
            "expert_batched_speedup": speedup,
            "expert_step_seconds_batched": t_batched,
            "expert_step_seconds_looped": t_looped,
            "qk_tracking_overhead": _tracking_overhead(device, repeats, seq=128 if quick else 256),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "repeats": repeats,
        }
        result["seconds"] = round(time.perf_counter() - start, 1)
        return result
    finally:
        torch.set_num_threads(threads)
