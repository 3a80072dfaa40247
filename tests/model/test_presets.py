"""Presets: the K2 config matches the published model; the small presets keep K2's shape ideas."""

import json
import subprocess
import sys

import pytest

from agentrl.errors import AgentRLError
from model.presets import build_config, count_params

# Exact element counts of the architecture (meta device). The K2 report rounds to 1.04T / 32.6B.
K2_TOTAL = 1_026_408_209_408
K2_ACTIVE = 32_861_477_888


def test_k2_counts_match_the_report_and_are_pinned():
    info = count_params("k2")
    assert info["total_params"] == K2_TOTAL
    assert info["active_params"] == K2_ACTIVE
    assert abs(info["total_params"] / 1.04e12 - 1) < 0.02
    assert abs(info["active_params"] / 32.6e9 - 1) < 0.02


def test_k2_config_fields():
    cfg = build_config("k2")
    assert (cfg.num_hidden_layers, cfg.first_k_dense_replace, cfg.hidden_size) == (61, 1, 7168)
    assert (cfg.num_attention_heads, cfg.q_lora_rank, cfg.kv_lora_rank) == (64, 1536, 512)
    assert (cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim) == (128, 64, 128)
    assert (cfg.n_routed_experts, cfg.num_experts_per_tok, cfg.n_shared_experts) == (384, 8, 1)
    assert cfg.moe_intermediate_size == 2048 and cfg.vocab_size == 163840
    assert cfg.routed_scaling_factor == pytest.approx(2.827)
    assert (cfg.topk_method, cfg.scoring_func) == ("noaux_tc", "sigmoid")


@pytest.mark.parametrize("preset", ["k2-tiny", "k2-small"])
def test_small_presets_keep_k2_shape(preset):
    cfg = build_config(preset)
    assert cfg.kv_lora_rank + cfg.qk_rope_head_dim == 576  # vLLM's CPU MLA backend requires 512 + 64
    assert cfg.n_shared_experts == 1 and cfg.first_k_dense_replace == 1
    assert cfg.n_routed_experts >= 8 * cfg.num_experts_per_tok / 2
    info = count_params(preset)
    if preset == "k2-tiny":
        assert 1e6 < info["total_params"] < 10e6
    else:
        assert 0.5e9 <= info["total_params"] <= 1.0e9


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(AgentRLError, match="unknown model preset 'k3'"):
        build_config("k3")


def test_overrides_replace_preset_fields_and_reject_unknown_ones():
    cfg = build_config("k2-tiny", hidden_size=192, q_lora_rank=144)
    assert (cfg.hidden_size, cfg.q_lora_rank, cfg.num_hidden_layers) == (192, 144, 4)
    # DeepseekV3Config itself would keep a misspelt field as an inert attribute.
    with pytest.raises(AgentRLError, match="unknown field.*hiden_size.*'k2-tiny'"):
        build_config("k2-tiny", hiden_size=192)


def test_cli_model_info_json_and_bad_preset():
    out = subprocess.run(
        [sys.executable, "-m", "agentrl.cli.main", "model", "info", "--preset", "k2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["total_params"] == K2_TOTAL and info["active_params"] == K2_ACTIVE
    bad = subprocess.run(
        [sys.executable, "-m", "agentrl.cli.main", "model", "info", "--preset", "k3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert "unknown model preset 'k3'" in bad.stderr
    assert "Traceback" not in bad.stderr
