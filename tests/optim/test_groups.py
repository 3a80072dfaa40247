"""Param groups: Moonlight's split plus fused experts and the router; a parameter in no group is an error."""

import pytest
import torch

from agentrl.errors import ConfigError
from agentrl.optim import MuonClip, MuonClipConfig, build_muonclip, build_param_groups, check_coverage
from tests.optim.helpers import tiny_model


def _by_name(groups):
    return {name: (g["name"], g["kind"], g["chunks"]) for g in groups for name in g["names"]}


def test_tiny_model_split():
    model = tiny_model()
    placed = _by_name(build_param_groups(model))
    assert set(placed) == {n for n, _ in model.named_parameters()}  # every parameter exactly once
    assert placed["model.embed_tokens.weight"][1] == "adamw"
    assert placed["lm_head.weight"][1] == "adamw"
    assert placed["model.norm.weight"][1] == "adamw"
    assert placed["model.layers.1.self_attn.kv_a_layernorm.weight"][1] == "adamw"
    assert placed["model.layers.1.mlp.experts.gate_up_proj"] == ("muon_experts_gate_up", "muon", 2)
    assert placed["model.layers.1.mlp.experts.down_proj"] == ("muon_experts_down", "muon", 1)
    assert placed["model.layers.1.mlp.gate.weight"] == ("router", "muon", 1)
    assert placed["model.layers.0.mlp.gate_proj.weight"] == ("muon", "muon", 1)  # dense layer 0
    assert placed["model.layers.1.mlp.shared_experts.down_proj.weight"] == ("muon", "muon", 1)
    assert placed["model.layers.2.self_attn.q_b_proj.weight"] == ("muon", "muon", 1)
    assert "model.layers.1.mlp.gate.e_score_correction_bias" not in placed  # a buffer, moved by the balancer


def test_router_can_go_to_adamw_and_adamw_overrides_apply():
    groups = build_param_groups(tiny_model(), router="adamw", adamw_lr=1e-3, adamw_weight_decay=0.0)
    router = next(g for g in groups if g["name"] == "router")
    adamw = next(g for g in groups if g["name"] == "adamw")
    assert router["kind"] == "adamw" and router["lr"] == 1e-3  # an AdamW router takes the AdamW settings
    assert adamw["lr"] == 1e-3 and adamw["weight_decay"] == 0.0
    with pytest.raises(ConfigError, match="router group"):
        build_param_groups(tiny_model(), router="sgd")


def test_frozen_parameters_are_skipped():
    model = tiny_model()
    model.model.embed_tokens.weight.requires_grad_(False)
    assert "model.embed_tokens.weight" not in _by_name(build_param_groups(model))


def test_parameter_fitting_no_group_is_named():
    model = tiny_model()
    model.extra = torch.nn.Conv2d(2, 2, 3)  # a 4-D kernel
    with pytest.raises(
        ConfigError, match=r"parameter extra.weight of shape \(2, 2, 3, 3\) fits no MuonClip group"
    ):
        build_param_groups(model)


def test_parameter_left_out_of_the_optimizer_is_named():
    model = tiny_model()
    groups = [g for g in build_param_groups(model) if g["name"] != "router"]
    optimizer = MuonClip(groups)
    with pytest.raises(
        ConfigError, match=r"3 trainable parameter\(s\) are in no optimizer group: model.layers.1.mlp.gate"
    ):
        check_coverage(model, optimizer)


def test_groups_without_kind_or_with_bad_shapes_are_refused():
    with pytest.raises(ConfigError, match="kind must be one of"):
        MuonClip([torch.nn.Parameter(torch.zeros(3, 3))])
    with pytest.raises(ConfigError, match="not a matrix"):
        MuonClip([{"params": [torch.nn.Parameter(torch.zeros(3))], "kind": "muon", "names": ["bias"]}])
    with pytest.raises(ConfigError, match="splitting into 2 chunks"):
        MuonClip([{"params": [torch.nn.Parameter(torch.zeros(2, 5, 4))], "kind": "muon", "chunks": 2}])


def test_build_muonclip_covers_the_model():
    model = tiny_model()
    optimizer = build_muonclip(model, MuonClipConfig())
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    assert optimizer.qk_clip is not None and optimizer.balancer is not None
