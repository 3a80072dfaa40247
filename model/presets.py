"""K2 model presets as transformers `DeepseekV3Config`s.

Kimi K2 *is* the DeepSeek-V3 architecture (MLA + many routed experts + one shared expert, sigmoid `noaux_tc`
router), so we build on `transformers.DeepseekV3ForCausalLM` rather than writing a transformer.

- `k2`: the published Kimi-K2 config (k2.md §2.1). Never materialised; `count_params` builds it on the meta device.
- `k2-small`: a GPU-sized preset (~0.6B total).
- `k2-tiny`: the CPU default (a few million parameters). Keeps K2's shape ideas: many experts with few active, one
  shared expert, a dense first layer, and MLA with kv_lora_rank 512 + rope 64 = 576, which vLLM's CPU MLA backend
  requires.

Deviation: K2 uses YaRN rope scaling (factor 32) for 128k context. The small presets use plain RoPE with short
contexts; `k2` keeps YaRN so its softmax scale (mscale²) matches the real model.
"""

from __future__ import annotations

from typing import Any

from agentrl.errors import AgentRLError

# Values from moonshotai/Kimi-K2-Instruct config.json (k2.md §2.1).
_K2: dict[str, Any] = dict(
    vocab_size=163840,
    hidden_size=7168,
    intermediate_size=18432,
    moe_intermediate_size=2048,
    num_hidden_layers=61,
    first_k_dense_replace=1,
    num_attention_heads=64,
    num_key_value_heads=64,
    q_lora_rank=1536,
    kv_lora_rank=512,
    qk_nope_head_dim=128,
    qk_rope_head_dim=64,
    v_head_dim=128,
    n_routed_experts=384,
    num_experts_per_tok=8,
    n_shared_experts=1,
    routed_scaling_factor=2.827,
    n_group=1,
    topk_group=1,
    norm_topk_prob=True,
    max_position_embeddings=131072,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    bos_token_id=163584,
    eos_token_id=163585,
    rope_parameters={
        "rope_type": "yarn",
        "rope_theta": 50000.0,
        "factor": 32.0,
        "original_max_position_embeddings": 4096,
        "beta_fast": 1.0,
        "beta_slow": 1.0,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
    },
)

_K2_SMALL: dict[str, Any] = dict(
    vocab_size=32768,
    hidden_size=1024,
    intermediate_size=2816,
    moe_intermediate_size=384,
    num_hidden_layers=12,
    first_k_dense_replace=1,
    num_attention_heads=16,
    num_key_value_heads=16,
    q_lora_rank=384,
    kv_lora_rank=512,
    qk_nope_head_dim=64,
    qk_rope_head_dim=64,
    v_head_dim=64,
    n_routed_experts=48,
    num_experts_per_tok=6,
    n_shared_experts=1,
    routed_scaling_factor=2.5,
    n_group=1,
    topk_group=1,
    norm_topk_prob=True,
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
)

_K2_TINY: dict[str, Any] = dict(
    vocab_size=2048,
    hidden_size=128,
    intermediate_size=384,
    moe_intermediate_size=96,
    num_hidden_layers=4,
    first_k_dense_replace=1,
    num_attention_heads=4,
    num_key_value_heads=4,
    q_lora_rank=96,
    kv_lora_rank=512,
    qk_nope_head_dim=32,
    qk_rope_head_dim=64,
    v_head_dim=32,
    n_routed_experts=16,
    num_experts_per_tok=2,
    n_shared_experts=1,
    routed_scaling_factor=2.0,
    n_group=1,
    topk_group=1,
    norm_topk_prob=True,
    max_position_embeddings=1024,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
)

PRESETS: dict[str, dict[str, Any]] = {"k2": _K2, "k2-small": _K2_SMALL, "k2-tiny": _K2_TINY}

# vLLM needs these in config.json to create `e_score_correction_bias` (platform-notes.md).
_ROUTER_FIELDS = {"topk_method": "noaux_tc", "scoring_func": "sigmoid"}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def build_config(preset: str, **overrides: Any):  # -> DeepseekV3Config
    """Return the `DeepseekV3Config` of `preset`, with keyword overrides (e.g. vocab_size, special token ids)."""
    from transformers import DeepseekV3Config

    if preset not in PRESETS:
        raise AgentRLError(f"unknown model preset {preset!r}; choose one of: {', '.join(preset_names())}")
    unknown = sorted(set(overrides) - set(PRESETS[preset]))
    if unknown:  # DeepseekV3Config would keep a misspelt field as an inert attribute
        raise AgentRLError(
            f"unknown field(s) {', '.join(unknown)} for model preset {preset!r}; "
            f"known: {', '.join(sorted(PRESETS[preset]))}"
        )
    fields = {**PRESETS[preset], **overrides}
    config = DeepseekV3Config(num_mtp_layers=0, **fields)
    for key, value in _ROUTER_FIELDS.items():
        setattr(config, key, value)
    config.architectures = ["DeepseekV3ForCausalLM"]
    return config


def count_params(preset: str, **overrides: Any) -> dict[str, Any]:
    """Count total and activated parameters on the meta device (nothing is allocated).

    Activated = total minus the routed experts a token does not use: per MoE layer,
    (n_routed - top_k) / n_routed of the fused expert stacks. Embeddings and lm_head count as activated,
    as in the K2 report's 32.6B.
    """
    import torch
    from transformers import DeepseekV3ForCausalLM

    config = build_config(preset, **overrides)
    with torch.device("meta"):
        model = DeepseekV3ForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())
    routed = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
    inactive = routed * (config.n_routed_experts - config.num_experts_per_tok) // config.n_routed_experts
    return {
        "preset": preset,
        "total_params": total,
        "active_params": total - inactive,
        "routed_expert_params": routed,
        "num_layers": config.num_hidden_layers,
        "n_routed_experts": config.n_routed_experts,
        "num_experts_per_tok": config.num_experts_per_tok,
    }
