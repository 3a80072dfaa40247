"""Freeze the RL config surface: adding, removing or renaming a key must be deliberate (update the snapshot)."""

from pathlib import Path

from pydantic import BaseModel

from agentrl.train.rl_config import RLConfig

SNAPSHOT = Path(__file__).with_name("rl_config_keys.txt")


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and f"{prefix}{name}" != "optimizer.muonclip":
            out += _keys(ann, f"{prefix}{name}.")  # the MuonClip section is agentrl/optim's surface, not ours
        else:
            out.append(f"{prefix}{name}")
    return out


def test_rl_config_keys_match_the_snapshot():
    keys = sorted(_keys(RLConfig))
    expected = SNAPSHOT.read_text().split()
    assert keys == expected, (
        "RLConfig keys changed; if deliberate, regenerate tests/train/rl_config_keys.txt. "
        f"added: {sorted(set(keys) - set(expected))}, removed: {sorted(set(expected) - set(keys))}"
    )


def test_every_rl_config_field_is_documented():
    def walk(model: type[BaseModel], prefix: str = "") -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(prefix + name)
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                missing += walk(ann, f"{prefix}{name}.")
        return missing

    assert walk(RLConfig) == []


def test_optimizer_section_builds_the_named_optimizer():
    import torch

    from agentrl.optim import MuonClip
    from tests.train.helpers import tiny_model

    model = tiny_model()
    assert isinstance(RLConfig().optimizer.build()(model), MuonClip)
    adamw = RLConfig.model_validate({"optimizer": {"name": "adamw", "lr": 3e-4}}).optimizer.build()(model)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["lr"] == 3e-4
