"""Atomic, resumable training checkpoints: model, optimizer, loop state, data order and every RNG.

Layout under `<run_dir>/checkpoints/`: `step-000012/state.pt` plus a `latest` file naming the newest directory.
A save writes `.tmp-step-000012-<pid>/state.pt`, fsyncs it, renames the directory into place, then replaces
`latest` through a temp file + `os.replace` (both renames are atomic on POSIX). A `kill -9` at any point therefore
leaves either the previous checkpoint or the new one, never a half-written file under a final name; leftover
`.tmp-*` directories are ignored and cleaned on the next save. `load_latest` falls back to scanning `step-*` when
`latest` is missing or names a pruned directory.

RNG state covers python `random`, numpy's global generator, torch CPU and (when present) every CUDA device.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

_PREFIX = "step-"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_train_state(root: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Atomically write `state` as the checkpoint of `step`; prune to the `keep` newest. Returns its directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{step:06d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        with open(tmp / "state.pt", "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as exc:  # a full disk surfaces from torch.save as a RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)  # free the space; the last complete checkpoint is untouched
        raise OSError(f"could not write checkpoint {final} (via {tmp}): {exc}") from exc
    if final.exists():  # re-saving a step (e.g. the stop checkpoint right after a periodic one)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    pointer_tmp = root / f".latest-{os.getpid()}"
    pointer_tmp.write_text(final.name)
    with open(pointer_tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(pointer_tmp, root / "latest")
    _fsync_dir(root)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(".tmp-*"):
        if not leftover.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(leftover, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Path | None:
    root = Path(root)
    if not root.is_dir():
        return None
    pointer = root / "latest"
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if (named / "state.pt").is_file():
            return named
    done = sorted(
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and (p / "state.pt").is_file()
    )
    return done[-1] if done else None


def load_latest(root: str | Path) -> dict[str, Any] | None:
    """The newest complete checkpoint's state, or None when there is none."""
    path = latest_checkpoint(root)
    if path is None:
        return None
    # weights_only=False: the state holds python/numpy RNG tuples; these files are our own.
    return torch.load(path / "state.pt", map_location="cpu", weights_only=False)
