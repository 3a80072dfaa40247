"""`agentrl bench gpu`: the GPU path on a CUDA machine (recorded in BENCHMARKS.md, "GPU path").

Sections, each timed with CUDA synchronisation, medians over repeats, each isolated so one failure does not
hide the others:

- `env`: GPU, driver, torch / transformers versions, whether vLLM imports.
- `train_k2_small`: k2-small (0.76B total, 0.21B active) training steps in bf16 autocast with fp32 master
  weights: the RL scoring path (`agentrl.train.logprobs.token_logprobs`) forward + backward, then the optimizer.
  Three optimizers on the same model and data: MuonClip (QK-Clip on: the max-logit tracker runs in every
  forward), MuonClip without QK-Clip, and torch's fused AdamW. Reports tokens/s and achieved TFLOP/s
  (6 x active non-embedding params x tokens + causal attention).
- `rl_update_k2_small`: the RL stage's own `PolicyLearner.update` (scoring pass, K2 objective, PTX, MuonClip) on
  k2-small, 32 samples of 1,024 tokens, fp32 vs `precision="bf16"`.
- `fsdp_update_k2_small`: the same update on an FSDP2-sharded model (one rank: DTensor parameters, MuonClip
  through DTensor, NCCL) vs the plain model: max parameter difference after one update, and both times.
- `optim_k2_small`: `agentrl bench optim`'s step-time ratio (MuonClip vs torch.optim.Muon + AdamW on the same
  2-D parameters) and batched-vs-looped expert Muon, on k2-small instead of k2-tiny.
- `optim_k2_tiny`: `agentrl bench optim` itself (issue 3's targets) on CUDA.
- `weight_sync_trainer_side`: what a sync costs the trainer for k2-small: checkpoint-named bf16 tensors, copied
  device-to-host into pinned buffers (a remote engine's path) and device-to-device (a colocated engine's path).
  The engine-side reload is not included (vLLM's CUDA build does not fit the 64 MiB the device tool carries).
- `hf_generate_k2_small`: transformers `generate` on k2-small in bf16 (TRL's rollout path without vLLM).

`agentrl bench gpu --json` needs CUDA. On a machine with only torch and transformers (a rented GPU box):
`python -m agentrl.bench.gpu OUT.json [--quick]` writes the JSON after every section; `AGENTRL_BENCH_GPU_SECTIONS=a,b`
runs a subset. `run(quick, preset=, device=)` runs the same sections anywhere (the test suite runs them on CPU
with k2-tiny, so the GPU bench cannot rot unseen). Section names say k2-small: the default preset.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from agentrl.errors import AgentRLError

SECTIONS_ENV = "AGENTRL_BENCH_GPU_SECTIONS"


@dataclass(frozen=True)
class Target:
    """Where the sections run: a model preset on a device."""

    preset: str
    device: torch.device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def empty_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def model(self, seed: int = 0) -> torch.nn.Module:
        from transformers import DeepseekV3ForCausalLM

        from model.presets import build_config

        torch.manual_seed(seed)
        with self.device:
            return DeepseekV3ForCausalLM(build_config(self.preset))

    def vocab_size(self) -> int:
        from model.presets import build_config

        return build_config(self.preset).vocab_size

    def timed(self, fn: Callable[[], Any], repeats: int, warmup: int = 2) -> list[float]:
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return times


def env(t: Target, quick: bool) -> dict[str, Any]:
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except FileNotFoundError:
        smi = "no nvidia-smi"
    import transformers

    try:
        import vllm

        vllm_version = vllm.__version__
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here"
        vllm_version = f"not importable: {type(exc).__name__}: {exc}"[:200]
    return {
        "gpu": smi,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "vllm": vllm_version,
        "preset": t.preset,
        "device": str(t.device),
    }


def _train_flops(model: torch.nn.Module, preset: str, batch: int, seq: int) -> float:
    """6 N T for the active non-embedding parameters plus causal attention (QK^T and PV), forward + backward."""
    from model.presets import count_params

    cfg = model.config
    counts = count_params(preset)
    active = counts["active_params"] - cfg.vocab_size * cfg.hidden_size  # the embedding lookup is no matmul
    tokens = batch * seq
    qk_dim = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    # Per sequence per layer, causal: T^2 / 2 positions x H heads x (2 qk_dim + 2 v_dim) FLOPs; x3 for backward.
    attention = (
        3 * batch * cfg.num_hidden_layers * seq * seq * cfg.num_attention_heads * (qk_dim + cfg.v_head_dim)
    )
    return 6.0 * active * tokens + attention


def train_k2_small(t: Target, quick: bool) -> dict[str, Any]:
    from agentrl.optim import MuonClipConfig, build_muonclip
    from agentrl.train.logprobs import token_logprobs

    batch, seq = (4, 1024) if quick else (8, 2048)
    repeats = 3 if quick else 8
    gen = torch.Generator(device=t.device).manual_seed(0)
    vocab = t.vocab_size()
    ids_BT = torch.randint(0, vocab, (batch, seq), device=t.device, generator=gen)
    attn_BT = torch.ones_like(ids_BT)
    temp_B = torch.ones(batch, device=t.device)

    optimizers: dict[str, Callable[[torch.nn.Module], torch.optim.Optimizer]] = {
        "muonclip": lambda model: build_muonclip(model, MuonClipConfig(lr=1e-4)),
        "muonclip_no_qkclip": lambda model: build_muonclip(model, MuonClipConfig(lr=1e-4, qk_clip=False)),
        "adamw_torch_fused": lambda model: torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True),
    }
    result: dict[str, Any] = {"batch": batch, "seq": seq, "tokens_per_step": batch * seq}
    for name, make in optimizers.items():
        model = t.model()  # fresh per optimizer: no tracker or balancer hooks carried over
        model.train()
        flops = _train_flops(model, t.preset, batch, seq)
        optimizer = make(model)

        fb_times, opt_times = [], []
        for i in range(repeats + 2):
            optimizer.zero_grad(set_to_none=True)
            t.sync()
            t0 = time.perf_counter()
            with torch.autocast(t.device.type, dtype=torch.bfloat16):
                lp_BT = token_logprobs(model, ids_BT, attn_BT, temp_B)
            (-lp_BT.mean()).backward()
            t.sync()
            t1 = time.perf_counter()
            optimizer.step()
            t.sync()
            t2 = time.perf_counter()
            if i >= 2:
                fb_times.append(t1 - t0)
                opt_times.append(t2 - t1)
        fb, opt = statistics.median(fb_times), statistics.median(opt_times)
        result[name] = {
            "forward_backward_s": round(fb, 4),
            "optimizer_step_s": round(opt, 4),
            "step_s": round(fb + opt, 4),
            "tokens_per_s": round(batch * seq / (fb + opt)),
            "achieved_tflops": round(flops / (fb + opt) / 1e12, 1),
        }
        del optimizer, model
        t.empty_cache()
    if t.device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    result["qk_tracking_overhead_forward_backward"] = round(
        result["muonclip"]["forward_backward_s"] / result["muonclip_no_qkclip"]["forward_backward_s"] - 1, 3
    )
    result["muonclip_step_over_adamw_step"] = round(
        result["muonclip"]["step_s"] / result["adamw_torch_fused"]["step_s"], 3
    )
    return result


def _rl_batch(t: Target, quick: bool) -> tuple[list[Any], list[float], list[Any], int, int]:
    """Synthetic groups of K samples (random tokens, half the rewards 1) and PTX examples for one RL update."""
    from agentrl.schemas.trajectory import Trajectory
    from agentrl.train.ptx import SFTExample

    groups, k, prompt_len, gen_len = (4, 4, 256, 256) if quick else (8, 4, 512, 512)
    gen = torch.Generator().manual_seed(0)
    vocab = t.vocab_size()
    trajs, rewards = [], []
    for g in range(groups):
        prompt = torch.randint(3, vocab, (prompt_len,), generator=gen).tolist()
        for j in range(k):
            response = torch.randint(3, vocab, (gen_len,), generator=gen).tolist()
            trajs.append(
                Trajectory(
                    id=f"g{g}s{j}",
                    task_id=f"t{g}",
                    group_id=f"t{g}",
                    token_ids=prompt + response,
                    loss_mask=[0] * prompt_len + [1] * gen_len,
                    logprobs=[None] * prompt_len + [-10.4] * gen_len,
                    prompt_len=prompt_len,
                    sampling={"temperature": 0.7},
                )
            )
            rewards.append(float((g + j) % 2))
    ptx = [SFTExample(torch.randint(3, vocab, (768,), generator=gen).tolist(), [0] * 256 + [1] * 512)] * 16
    return trajs, rewards, ptx, groups, k


def _learner(
    model: torch.nn.Module, precision: str, groups: int, k: int, ptx: list[Any], world_size: int = 1
) -> Any:
    from agentrl.train.learner import PolicyLearner
    from agentrl.train.ptx import PTXSampler
    from agentrl.train.rl_config import RLConfig
    from agentrl.train.schedules import ConstantSchedule

    cfg = RLConfig.model_validate(
        {"precision": precision, "tasks_per_step": groups, "samples_per_task": k, "ptx": {"beta": 0.5}}
    )
    return PolicyLearner(
        model,
        cfg.optimizer.build()(model),
        cfg.objective.build(),
        cfg,
        pad_id=0,
        lr_schedule=ConstantSchedule(1.0),
        ptx=PTXSampler(ptx, batch_size=4, pad_id=0),
        world_size=world_size,
    )


def rl_update_k2_small(t: Target, quick: bool) -> dict[str, Any]:
    """One `PolicyLearner.update` (the RL stage's own update: pi_old scoring pass, K2 objective, PTX, MuonClip with
    QK-Clip and routing measurement) on k2-small, fp32 vs `precision="bf16"`."""
    trajs, rewards, ptx, groups, k = _rl_batch(t, quick)
    result: dict[str, Any] = {"samples": len(trajs), "tokens": sum(len(x.token_ids) for x in trajs)}
    for precision in ("fp32", "bf16"):
        model = t.model()
        learner = _learner(model, precision, groups, k, ptx)
        metrics: dict[str, Any] = {}

        def update(learner: Any = learner, metrics: dict[str, Any] = metrics) -> None:
            metrics.update(learner.update(trajs, rewards, step=0, temperature=0.7))

        seconds = statistics.median(t.timed(update, 2 if quick else 3, warmup=1))
        result[precision] = {
            "update_s": round(seconds, 3),
            "tokens_per_s": round(result["tokens"] / seconds),
            "loss_rl": round(float(metrics["loss/rl"]), 5),
            "loss_ptx": round(float(metrics["loss/ptx"]), 4),
            "max_logit": round(float(metrics.get("qk_clip/max_logit", float("nan"))), 2),
        }
        del learner, model
        t.empty_cache()
    result["bf16_speedup"] = round(result["fp32"]["update_s"] / result["bf16"]["update_s"], 2)
    return result


def fsdp_update_k2_small(t: Target, quick: bool) -> dict[str, Any]:
    """The data-parallel path on this device: the same update on an FSDP2-sharded model (DTensor parameters,
    MuonClip through DTensor, NCCL on CUDA, gloo on CPU; one rank, so the mesh has one shard) vs the plain model.
    Reports the max parameter difference after one update and both update times."""
    import torch.distributed as dist

    from agentrl.train.distributed import full_state_dict, shard_model

    trajs, rewards, ptx, groups, k = _rl_batch(t, quick)
    port = os.environ.get("MASTER_PORT", str(29500 + os.getpid() % 1000))
    dist.init_process_group(
        "nccl" if t.device.type == "cuda" else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=0,
        world_size=1,
    )
    try:
        result: dict[str, Any] = {}
        states = {}
        for name in ("plain", "fsdp"):
            model = t.model()
            if name == "fsdp":
                shard_model(model, 1, t.device.type)
                result["dtensor_params"] = sum(hasattr(p, "full_tensor") for p in model.parameters())
            learner = _learner(model, "fp32", groups, k, ptx)
            t.sync()
            start = time.perf_counter()
            learner.update(trajs, rewards, step=0, temperature=0.7)
            t.sync()
            result[f"{name}_update_s"] = round(time.perf_counter() - start, 3)
            states[name] = full_state_dict(model)
            del learner, model
            t.empty_cache()
        result["max_abs_param_diff"] = max(
            float((states["plain"][n].float() - states["fsdp"][n].float()).abs().max())
            for n in states["plain"]
        )
        return result
    finally:
        dist.destroy_process_group()


def optim_k2_small(t: Target, quick: bool) -> dict[str, Any]:
    from agentrl.bench.optim import expert_speedup, step_time_ratios

    repeats = 3 if quick else 7
    ratio_bf16, _ = step_time_ratios(t.device, repeats, make_model=lambda d: t.model())
    experts = expert_speedup(t.device, repeats, make_model=lambda d: t.model())
    return {"step_time_ratio_vs_torch": round(ratio_bf16, 3), **{k: round(v, 4) for k, v in experts.items()}}


def optim_k2_tiny(t: Target, quick: bool) -> dict[str, Any]:
    from agentrl.bench.optim import run as bench_optim

    return bench_optim(quick=quick)


def weight_sync_trainer_side(t: Target, quick: bool) -> dict[str, Any]:
    from model.weights import checkpoint_named_tensors

    model = t.model()
    repeats = 3 if quick else 5
    named = [(n, t.detach().to(torch.bfloat16).contiguous()) for n, t in checkpoint_named_tensors(model)]
    nbytes = sum(t.numel() * t.element_size() for _, t in named)
    host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=t.device.type == "cuda") for _, t in named]
    peer = [torch.empty_like(t) for _, t in named]

    def pack() -> None:
        for _, t in checkpoint_named_tensors(model):
            t.detach().to(torch.bfloat16).contiguous()

    def to_host() -> None:
        for (_, t), h in zip(named, host, strict=True):
            h.copy_(t, non_blocking=True)

    def to_peer() -> None:
        for (_, t), p in zip(named, peer, strict=True):
            p.copy_(t, non_blocking=True)

    pack_s = statistics.median(t.timed(pack, repeats))
    host_s = statistics.median(t.timed(to_host, repeats))
    peer_s = statistics.median(t.timed(to_peer, repeats))
    return {
        "tensors": len(named),
        "bytes_bf16": nbytes,
        "pack_bf16_s": round(pack_s, 4),
        "device_to_pinned_host_s": round(host_s, 4),
        "device_to_pinned_host_gb_s": round(nbytes / host_s / 1e9, 1),
        "device_to_device_s": round(peer_s, 4),
        "device_to_device_gb_s": round(nbytes / peer_s / 1e9, 1),
    }


def hf_generate_k2_small(t: Target, quick: bool) -> dict[str, Any]:
    model = t.model().to(torch.bfloat16).eval()
    batch, prompt_len, new = (16, 64, 32) if quick else (64, 128, 128)
    gen = torch.Generator(device=t.device).manual_seed(1)
    ids = torch.randint(3, model.config.vocab_size, (batch, prompt_len), device=t.device, generator=gen)

    def run() -> None:
        with torch.no_grad():
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=True,
                temperature=1.0,
                pad_token_id=0,
            )

    seconds = statistics.median(t.timed(run, 2 if quick else 3, warmup=1))
    return {
        "batch": batch,
        "prompt_len": prompt_len,
        "new_tokens": new,
        "tok_s": round(batch * new / seconds),
    }


SECTIONS: dict[str, Callable[[Target, bool], dict[str, Any]]] = {
    "env": env,
    "train_k2_small": train_k2_small,
    "rl_update_k2_small": rl_update_k2_small,
    "fsdp_update_k2_small": fsdp_update_k2_small,
    "weight_sync_trainer_side": weight_sync_trainer_side,
    "hf_generate_k2_small": hf_generate_k2_small,
    "optim_k2_small": optim_k2_small,
    "optim_k2_tiny": optim_k2_tiny,
}


def run(
    quick: bool = False,
    preset: str = "k2-small",
    device: str | None = None,
    sections: list[str] | None = None,
    out_path: str | None = None,
) -> dict[str, Any]:
    """Run `sections` (default: all; `env` always) on `preset` and `device` (default: CUDA, required).

    A section that raises is recorded as {"error": traceback} and the rest still run. With `out_path` the JSON is
    rewritten after every section, so a run cut short keeps what it measured.
    """
    if device is None:
        if not torch.cuda.is_available():
            raise AgentRLError("agentrl bench gpu needs a CUDA device (torch.cuda.is_available() is False)")
        device = "cuda"
    target = Target(preset, torch.device(device))
    if sections is None and os.environ.get(SECTIONS_ENV):
        sections = os.environ[SECTIONS_ENV].split(",")
    names = ["env", *[n for n in sections if n != "env"]] if sections else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise AgentRLError(f"unknown gpu bench section(s) {unknown}; choose from {sorted(SECTIONS)}")
    results: dict[str, Any] = {}
    for name in names:
        start = time.perf_counter()
        try:
            results[name] = SECTIONS[name](target, quick)
        except Exception:  # noqa: BLE001 - record and go on to the next section
            results[name] = {"error": traceback.format_exc()[-2000:]}
        results[name + "_wall_s"] = round(time.perf_counter() - start, 1)
        target.empty_cache()
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
        if out_path is not None:
            with open(out_path, "w") as f:
                json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    run(quick="--quick" in sys.argv[2:], out_path=sys.argv[1])
