"""Load with bounded memory: environment servers (concurrent sessions, steps) and the rollout API (workers).

Both servers run in their own processes, as deployed, so the driver does not share their GIL and their
resident memory (RSS, from /proc) can be sampled. Memory is judged after a warm-up round at the full
concurrency (imports, thread pools, per-thread malloc arenas, SQLite page caches and the collect path's buffers
are allocated once and then reused), then over the measured run: `rss_growth_after_warmup_mib` beyond
`RSS_MARGIN_MB` or `RSS_MARGIN_FRAC` of the warm RSS, whichever is larger, counts as a leak. The env driver is `agentrl.bench.envs._drive` (the
environments' own load test), the API driver is `services.rollout_api.loadtest.run_load`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

RSS_MARGIN_MB = 64.0
RSS_MARGIN_FRAC = 0.25


def rss_mb(pid: int) -> float:
    """Resident set size of process `pid` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Samples a process's RSS every `period_s` in a thread; `peak` and `last` after `stop()`."""

    def __init__(self, pid: int, period_s: float = 0.5) -> None:
        self.pid, self.period_s = pid, period_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.samples.append(rss_mb(self.pid))
            self._stop.wait(self.period_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def memory_verdict(warm_mb: float, end_mb: float, peak_mb: float) -> dict[str, Any]:
    """Growth from the warm baseline to the end of the run against max(RSS_MARGIN_MB, RSS_MARGIN_FRAC * warm)."""
    margin = max(RSS_MARGIN_MB, RSS_MARGIN_FRAC * warm_mb)
    return {
        "rss_warm_mib": round(warm_mb, 1),
        "rss_end_mib": round(end_mb, 1),
        "rss_peak_mib": round(peak_mb, 1),
        "rss_growth_after_warmup_mib": round(end_mb - warm_mb, 1),
        "rss_margin_mib": round(margin, 1),
        "rss_bounded": end_mb - warm_mb <= margin,
    }


def env_load(
    sessions: int, steps: int, factory: str = "environments.tool_world.server:create_app"
) -> dict[str, Any]:
    """`sessions` concurrent sessions, `steps` tool-call steps in all, against an env server process."""
    from agentrl.bench.envs import _drive, _Server

    server = _Server(factory)
    try:
        warm = asyncio.run(_drive(server.url, min(sessions, 32), max(200, steps // 10), []))
        warm_mb = rss_mb(server.proc.pid)
        with RssSampler(server.proc.pid) as sampler:
            load = asyncio.run(_drive(server.url, sessions, steps, []))
        end_mb = rss_mb(server.proc.pid)
        healthy = httpx.get(server.url + "/health", timeout=10).status_code == 200
    finally:
        server.close()
    return {
        "server": factory,
        "sessions": sessions,
        "steps": load["steps"],
        "errors": len(warm["errors"]) + len(load["errors"]),
        "error_samples": (warm["errors"] + load["errors"])[:3],
        "steps_per_s": round(load["steps"] / load["wall"], 1),
        "healthy_after": healthy,
        **memory_verdict(warm_mb, end_mb, max(sampler.samples, default=end_mb)),
    }


@contextlib.contextmanager
def api_server(db: Path, token: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """The rollout API as `python -m services.rollout_api` (its container entry point) on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "AGENTRL_API_TOKEN": token}
    cmd = [sys.executable, "-m", "services.rollout_api", "--db", str(db), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--log-level", "warning", "--reap-interval-s", "1", "--sqlite-synchronous", "NORMAL"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"rollout API exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def api_load(
    workdir: Path,
    workers: int,
    duration_s: float,
    token: str = "load-token",
    warmup_s: float | None = None,
) -> dict[str, Any]:
    """`workers` threads leasing and submitting for `duration_s` against a rollout API process; audited.

    The warm-up is a full round at the same concurrency (`warmup_s`, default a quarter of the run, at least
    10 s), ending with the collect of its trajectories: a smaller warm-up leaves the thread pool, its malloc
    arenas and the pooled SQLite connections to be first allocated inside the measured run.
    """
    from services.rollout_api.loadtest import run_load

    warmup_s = max(10.0, duration_s / 4) if warmup_s is None else warmup_s
    with api_server(workdir / "rollout-load.db", token) as (url, proc):
        warm = run_load(url, token, workers=workers, duration_s=warmup_s, tokens=512)
        warm_mb = rss_mb(proc.pid)
        with RssSampler(proc.pid) as sampler:
            out = run_load(url, token, workers=workers, duration_s=duration_s, tokens=512)
        end_mb = rss_mb(proc.pid)
        healthy = httpx.get(url + "/health", timeout=10).status_code == 200
    for key in ("trajectories_lost", "trajectories_duplicated", "errors"):
        out[key] += warm[key]
    return {
        **out,
        "warmup_s": warm["duration_s"],
        "healthy_after": healthy,
        **memory_verdict(warm_mb, end_mb, max(sampler.samples, default=end_mb)),
    }


def api_rss_rounds(
    workdir: Path, workers: int = 64, rounds: int = 8, round_s: float = 60.0, token: str = "load-token"
) -> list[dict[str, Any]]:
    """Leak or plateau: `rounds` load rounds at a fixed worker count against one API process and one growing
    database; the server's RSS and the database size after each round (docs/reliability.md, §4)."""
    from services.rollout_api.loadtest import run_load

    db = workdir / "rollout-rounds.db"
    out: list[dict[str, Any]] = []
    with api_server(db, token) as (url, proc), RssSampler(proc.pid, 2.0) as sampler:
        for r in range(rounds):
            res = run_load(url, token, workers=workers, duration_s=round_s, tokens=512)
            db_bytes = sum(p.stat().st_size for p in workdir.glob(db.name + "*"))
            out.append(
                {
                    "round": r + 1,
                    "rss_mib": round(rss_mb(proc.pid), 1),
                    "rss_peak_mib": round(max(sampler.samples, default=0.0), 1),
                    "db_mib": round(db_bytes / 2**20, 1),
                    "trajectories": res["trajectories"],
                    "lost": res["trajectories_lost"],
                    "duplicated": res["trajectories_duplicated"],
                }
            )
    return out
