"""Config tree loading: stacked YAML, dotted overrides, and clear errors for bad input."""

import pytest
from pydantic import BaseModel, Field

from agentrl.config import load_config, write_run_metadata
from agentrl.errors import ConfigError


class Inner(BaseModel, extra="forbid"):
    lr: float = Field(1e-3, gt=0)
    steps: int = 10


class Root(BaseModel, extra="forbid"):
    name: str = "run"
    optim: Inner = Inner()


def test_files_merge_then_overrides(tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("name: a\noptim:\n  lr: 0.1\n  steps: 3\n")
    b.write_text("optim:\n  steps: 5\n")
    cfg = load_config(Root, [a, b], ["optim.lr=2e-4", "name=x"])
    assert cfg == Root(name="x", optim=Inner(lr=2e-4, steps=5))


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+:\d+"):
        load_config(Root, [bad])


def test_unknown_override_key_lists_known_fields():
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'.*known: lr, steps"):
        load_config(Root, [], ["optim.lrr=1"])


def test_invalid_value_names_field(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lr: Input should be greater than 0"):
        load_config(Root, [], ["optim.lr=-1"])
    f = tmp_path / "x.yaml"
    f.write_text("optim:\n  typo: 1\n")
    with pytest.raises(ConfigError, match=r"optim\.typo: Extra inputs are not permitted"):
        load_config(Root, [f])


def test_missing_file_and_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Root, [tmp_path / "nope.yaml"])
    with pytest.raises(ConfigError, match="must look like key.path=value"):
        load_config(Root, [], ["optim.lr"])


def test_run_metadata_written(tmp_path):
    write_run_metadata(tmp_path, Root())
    assert "optim:" in (tmp_path / "config.yaml").read_text()
    meta = (tmp_path / "meta.json").read_text()
    assert '"versions"' in meta and '"git_sha"' in meta


class WithFactory(BaseModel, extra="forbid"):
    inner: Inner = Field(default_factory=lambda: Inner(lr=0.5, steps=7))


def test_overriding_one_key_keeps_the_sections_factory_defaults():
    cfg = load_config(WithFactory, [], ["inner.steps=9"])
    assert cfg.inner == Inner(lr=0.5, steps=9)
