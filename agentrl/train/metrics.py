"""Step metrics to JSONL and TensorBoard, plus a rich progress display.

`metrics.jsonl` has one object per step: `{"step": n, "time": unix_s, name: value, ...}`. Values are floats, or
lists of floats for per-layer stats (QK-Clip max logit per layer, expert load per layer); TensorBoard gets the
scalars and, for lists, their max and mean. On resume the file is cut back to the resumed step, so rows for steps
that ran after the last checkpoint (and will run again) do not appear twice.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    path = Path(path)
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line torn by a kill; everything after it is untrusted
    return rows


class MetricsLogger:
    def __init__(self, run_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        if resume_step is not None:
            kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a")  # noqa: SIM115 (kept open for the run; closed in close())
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=resume_step)

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"step": step, "time": time.time()}
        for key, value in metrics.items():
            cleaned = _clean(value)
            if cleaned is not None:
                row[key] = cleaned
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key in ("step", "time"):
                    continue
                if isinstance(value, list):
                    finite = [v for v in value if math.isfinite(v)]
                    if finite:
                        self._tb.add_scalar(f"{key}/max", max(finite), step)
                        self._tb.add_scalar(f"{key}/mean", sum(finite) / len(finite), step)
                else:
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()
        return row

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


class Progress:
    """A rich progress bar with the headline metrics; a no-op when disabled or not on a terminal."""

    KEYS = ("reward/mean", "success/mean", "temperature", "loss/total", "budget/truncation_rate")

    def __init__(self, total: int, start: int = 0, enabled: bool = True) -> None:
        self._progress = None
        if not (enabled and sys.stderr.isatty()):
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]RL"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task("rl", total=total, completed=start, info="")
        self._progress.start()

    def update(self, step: int, row: dict[str, Any]) -> None:
        if self._progress is None:
            return
        info = "  ".join(
            f"{k.split('/')[0]}={row[k]:.3g}" for k in self.KEYS if isinstance(row.get(k), float)
        )
        self._progress.update(self._task, completed=step, info=info)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
