"""Load domains (tables + tools + task templates) from YAML or JSON files.

The hand-written domains in `domains/` make tool_world work on its own; `agentrl synth` writes evolved domains in
the same format. A malformed file fails with `DomainError` naming the file and the field path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from environments.tool_world.spec import DomainSpec

BUILTIN_DIR = Path(__file__).parent / "domains"


class DomainError(ValueError):
    """A domain file is unreadable or does not match the DomainSpec schema."""


def parse_domain(data: Any, where: str) -> DomainSpec:
    try:
        return DomainSpec.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:8]]
        raise DomainError(f"invalid domain in {where}:\n" + "\n".join(lines)) from None


def load_domain(path: str | Path) -> DomainSpec:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DomainError(f"cannot read domain file {path}: {exc.strerror}") from None
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=loader)  # noqa: S506
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DomainError(f"malformed domain file {path}: {exc}") from None
    return parse_domain(data, str(path))


def load_domains(paths: list[str | Path] | None = None) -> list[DomainSpec]:
    """Domains from files or directories (all *.yaml/*.yml/*.json inside); default: the built-in ones."""
    files: list[Path] = []
    for p in [Path(x) for x in (paths or [BUILTIN_DIR])]:
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
        else:
            files.append(p)
    domains = [load_domain(f) for f in files]
    names = [d.name for d in domains]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DomainError(f"duplicate domain names {dup} in {[str(f) for f in files]}")
    return domains


def builtin_domains() -> list[DomainSpec]:
    return load_domains([BUILTIN_DIR])
