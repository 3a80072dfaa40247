"""Source documents for `agentrl synth rephrase`: JSONL records, or plain .txt / .md files, or folders of them.

A JSONL line is `{"text": ..., "id"?: ..., "title"?: ..., "kind"?: "knowledge" | "math"}`. A broken line, a record
without text or an unknown kind is an error that names the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agentrl.errors import ConfigError

KINDS = ("knowledge", "math")
SUFFIXES = (".jsonl", ".txt", ".md")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str
    kind: str | None  # None: not given, decided by `math: auto`
    source: str  # "file:line" or "file"


def default_title(text: str, limit: int = 80) -> str:
    """The first line, without markdown heading marks, cut at a word boundary."""
    first = next((ln.strip().lstrip("#").strip() for ln in text.splitlines() if ln.strip()), "")
    if len(first) <= limit:
        return first.rstrip(".:")
    cut = first[:limit].rsplit(" ", 1)[0]
    return cut + " ..."


def _from_jsonl(path: Path) -> list[Document]:
    docs = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: broken JSONL line ({exc.msg})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str) or not rec["text"].strip():
                raise ConfigError(f"{where}: a rephrase record must be an object with a non-empty 'text'")
            kind = rec.get("kind")
            if kind is not None and kind not in KINDS:
                raise ConfigError(f"{where}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
            text = rec["text"]
            docs.append(
                Document(
                    id=str(rec.get("id", f"{path.stem}-{lineno}")),
                    text=text,
                    title=str(rec.get("title") or default_title(text)),
                    kind=kind,
                    source=where,
                )
            )
    return docs


def load_documents(inputs: list[str], limit: int = 0) -> list[Document]:
    """All documents of `inputs` in order (folders: their files sorted by name); ids must be unique."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES)
        elif p.is_file():
            if p.suffix not in SUFFIXES:
                raise ConfigError(f"rephrase input {p}: unsupported file type (use {', '.join(SUFFIXES)})")
            files.append(p)
        else:
            raise ConfigError(f"rephrase input not found: {p}")
    docs: list[Document] = []
    for f in files:
        if f.suffix == ".jsonl":
            docs += _from_jsonl(f)
        else:
            text = f.read_text()
            if text.strip():
                docs.append(
                    Document(id=f.stem, text=text, title=default_title(text), kind=None, source=str(f))
                )
    seen: dict[str, str] = {}
    for d in docs:
        if d.id in seen:
            raise ConfigError(f"{d.source}: duplicate document id {d.id!r} (first at {seen[d.id]})")
        seen[d.id] = d.source
    return docs[:limit] if limit else docs
