"""Verdict caches for the LLM judge, keyed by (judge model, rubric ids and texts, transcript hash).

The rubric part of the key hashes each rubric's text as well as its id, so editing a rubric file invalidates
old verdicts. Abstentions are never cached: a transient failure must not become a permanent answer.
`SQLiteCache` persists across runs and is safe to share between threads (one connection, one lock).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from agentrl.rewards.base import stable_json
from agentrl.rewards.rubrics import Rubric


def cache_key(model: str, rubrics: list[Rubric], transcript_sha: str) -> str:
    rub = sorted((r.id, hashlib.sha256(r.description.encode()).hexdigest()[:12]) for r in rubrics)
    return hashlib.sha256(stable_json([model, rub, transcript_sha]).encode()).hexdigest()


class VerdictCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...


class MemoryCache:
    def __init__(self) -> None:
        self._d: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self._d.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._d[key] = value

    def __len__(self) -> int:
        return len(self._d)


class SQLiteCache:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._conn.commit()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM verdicts WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?)", (key, json.dumps(value)))
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
