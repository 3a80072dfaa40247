"""Output helpers: every measuring command prints one JSON object as its last line under --json."""

from __future__ import annotations

import json
import math
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def emit_json(obj: dict[str, Any]) -> None:
    """Print `obj` as a single JSON line (non-finite floats become null)."""
    print(json.dumps(_clean(obj), sort_keys=False), flush=True)
