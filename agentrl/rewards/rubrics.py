"""Rubric data: schema and loader for `rubrics/` (core, prescriptive and task rubrics).

K2 §3.2.2: the critic compares samples against core rubrics (App. F.1), prescriptive rubrics (App. F.2, anti
reward-hacking prohibitions) and human-annotated task rubrics. Here task rubrics are written by `agentrl synth`
into `rubrics/tasks/*.yaml`. Every file holds `rubrics: [ ... ]`. Bad files fail with a `RubricError` naming the
file, the field and, where YAML can tell, the line.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentrl.errors import AgentRLError

DEFAULT_RUBRIC_DIR = Path(__file__).resolve().parents[2] / "rubrics"


class RubricError(AgentRLError):
    """A rubric file is missing, malformed or inconsistent."""


class RubricKind(str, Enum):
    core = "core"
    prescriptive = "prescriptive"  # a prohibition: satisfied when the response does NOT do the thing
    task = "task"


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", description="Unique across all rubric files.")
    name: str = Field(min_length=1)
    description: str = Field(min_length=1, description="The text the critic and the judge read.")
    kind: RubricKind
    weight: float = Field(default=1.0, ge=0.0)
    mandatory: bool = False
    success_criteria: list[str] = Field(default_factory=list)
    checkpoints: list[str] = Field(default_factory=list)
    expected_tool_pattern: list[str] = Field(default_factory=list)
    task_ids: list[str] = Field(default_factory=list, description="Tasks this rubric applies to (globs).")
    domains: list[str] = Field(default_factory=list, description="Domains this rubric applies to (globs).")

    @field_validator("description", "name")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()

    def applies_to(self, task_id: str | None = None, domain: str | None = None) -> bool:
        """Core and prescriptive rubrics apply everywhere; a task rubric only where its globs match."""
        if self.kind is not RubricKind.task:
            return True
        if not self.task_ids and not self.domains:
            return False  # an unscoped task rubric would leak into every task
        by_task = task_id is not None and any(fnmatch.fnmatchcase(task_id, p) for p in self.task_ids)
        by_domain = domain is not None and any(fnmatch.fnmatchcase(domain, p) for p in self.domains)
        return by_task or by_domain


class RubricFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rubrics: list[Rubric]


def _node_line(root: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """Follow a pydantic error location through the YAML node tree; return the 1-based line."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                break
            key = next(k for k, v in node.value if v is match)
            node, line = match, key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _format_loc(data: Any, loc: Sequence[Any]) -> str:
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            rid = node[part].get("id") if isinstance(node, list) and isinstance(node[part], dict) else None
            parts.append(f"[{part}]" + (f"(id={rid})" if rid else ""))
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            parts.append(f".{part}" if parts else str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return "".join(parts) or "<root>"


def load_rubric_file(path: str | Path) -> list[Rubric]:
    """Parse and validate one rubric YAML file."""
    path = Path(path)
    if not path.is_file():
        raise RubricError(f"rubric file not found: {path}")
    text = path.read_text()
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RubricError(f"{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise RubricError(f"{path}: top level must be a mapping with a 'rubrics' list")
    try:
        return RubricFile.model_validate(data).rubrics
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            line = _node_line(root, err["loc"])
            at = f":{line}" if line else ""
            lines.append(f"  {path}{at}: field {_format_loc(data, err['loc'])}: {err['msg']}")
        raise RubricError(f"invalid rubric file {path}:\n" + "\n".join(lines)) from None


class RubricSet(BaseModel):
    """All loaded rubrics, with lookups by kind and by task."""

    rubrics: list[Rubric]

    def by_id(self, rubric_id: str) -> Rubric:
        for r in self.rubrics:
            if r.id == rubric_id:
                return r
        raise RubricError(f"unknown rubric id {rubric_id!r}")

    def of_kind(self, kind: RubricKind | str) -> list[Rubric]:
        kind = RubricKind(kind)
        return [r for r in self.rubrics if r.kind is kind]

    def for_task(self, task_id: str | None = None, domain: str | None = None) -> list[Rubric]:
        """Core + prescriptive + the task rubrics scoped to this task or domain (the critic's combined set)."""
        return [r for r in self.rubrics if r.applies_to(task_id, domain)]


def load_rubrics(paths: Iterable[str | Path] | None = None) -> RubricSet:
    """Load rubric files and directories (recursively, `*.yaml`/`*.yml`); ids must be unique across files."""
    roots = [Path(p) for p in paths] if paths is not None else [DEFAULT_RUBRIC_DIR]
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files.extend(sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml")))
        elif root.is_file():
            files.append(root)
        else:
            raise RubricError(f"rubric path not found: {root}")
    seen: dict[str, Path] = {}
    out: list[Rubric] = []
    for f in files:
        for r in load_rubric_file(f):
            if r.id in seen:
                raise RubricError(
                    f"{f}: field rubrics.id: duplicate rubric id {r.id!r} (first in {seen[r.id]})"
                )
            seen[r.id] = f
            out.append(r)
    return RubricSet(rubrics=out)
