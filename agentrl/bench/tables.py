"""BENCHMARKS.md tables for `agentrl bench all`: one generated section between two HTML-comment markers.

The section is rebuilt on every run and spliced into BENCHMARKS.md between `<!-- bench:all:begin -->` and
`<!-- bench:all:end -->` (appended when the markers are absent). Everything outside the markers is left byte for
byte as it was, and the file is replaced atomically (temporary file in the same folder, then `os.replace`).

The benches report measurements only; the targets and peer paths below restate each bench module's docstring
(and the issue that set them) so the tables can say "met" or not. Keys without an entry are rendered as plain
rows, in the order the bench reported them, so a new key shows up without a change here.
"""

from __future__ import annotations

import json
import operator
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:all:begin -->"
END = "<!-- bench:all:end -->"

# bench -> key -> (comparison, bound); a string bound names another key of the same result.
TARGETS: dict[str, dict[str, tuple[str, Any]]] = {
    "optim": {
        "muon_vs_torch_max_abs_diff": ("<=", 1e-6),
        "step_time_ratio_vs_torch": ("<=", 1.2),
        "expert_batched_speedup": (">=", 3.0),
        "qk_tracking_overhead": ("<=", 0.10),
    },
    "envs": {
        "sandbox_p50_ms": ("<=", 30.0),
        "sandbox_exec_per_s": (">=", 40.0),
        "tool_world_steps_per_s": (">=", 1000.0),
        "tool_world_p99_ms": ("<=", 50.0),
        "load_errors": ("==", 0),
    },
    "rollout": {"agentic_over_raw": (">=", 0.9), "agentic_over_hf": (">=", 2.5)},
    "rl": {"step_time_ratio": ("<=", 0.5)},
    "sync": {"sync_logprob_gap": ("<=", 0.1)},
    "synth": {"synth_accepted": (">=", "synth_target"), "synth_meets_target": ("==", True)},
    "reliability": {
        "faults_survived": ("==", "faults_injected"),
        "fuzz_5xx": ("==", 0),
        "fuzz_unhealthy": ("==", 0),
        "auth_leaks": ("==", 0),
        "load_errors": ("==", 0),
        "api_errors": ("==", 0),
        "trajectories_lost": ("==", 0),
        "trajectories_duplicated": ("==", 0),
        "memory_bounded": ("==", True),
        "ok": ("==", True),
    },
}

# bench -> (peer path, the key holding the ratio against it, what the ratio is)
PEERS: dict[str, tuple[str, str, str]] = {
    "optim": (
        "torch.optim.Muon",
        "step_time_ratio_vs_torch",
        "MuonClip step / torch.optim.Muon + AdamW step, lower is better",
    ),
    "envs": (
        "docker-per-exec",
        "docker_over_sandbox",
        "`docker run` p50 / bubblewrap jail p50, higher means the jail is faster",
    ),
    "rollout": (
        "HF generate",
        "agentic_over_hf",
        "agentic rollout tok/s / transformers `generate` tok/s, higher is better",
    ),
    "rl": (
        "TRL GRPOTrainer",
        "step_time_ratio",
        "agentrl RL step time / TRL GRPOTrainer step, lower is better",
    ),
}

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}
_SHOW_OP = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "="}


def fmt(value: Any, limit: int = 80) -> str:
    """One table cell: numbers compactly, containers as JSON, `|` and newlines escaped, long text cut."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = f"{value:,}" if abs(value) >= 10_000 else str(value)
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    text = text.replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check(bench: str, key: str, result: dict[str, Any]) -> tuple[str, str]:
    """(target cell, met cell) for one key; empty strings when the key has no target."""
    spec = TARGETS.get(bench, {}).get(key)
    if spec is None:
        return "", ""
    op, bound = spec
    shown = f"`{bound}`" if isinstance(bound, str) else fmt(bound)
    if isinstance(bound, str):
        if bound not in result:
            return f"{_SHOW_OP[op]} {shown}", "?"
        bound = result[bound]
    value = result.get(key)
    if value is None or bound is None or (isinstance(value, str) and not isinstance(bound, str)):
        return f"{_SHOW_OP[op]} {shown}", "?"
    try:
        met = _OPS[op](value, bound)
    except TypeError:
        return f"{_SHOW_OP[op]} {shown}", "?"
    return f"{_SHOW_OP[op]} {shown}", "yes" if met else "**no**"


def _summary_cells(name: str, entry: dict[str, Any]) -> tuple[str, str, str]:
    """(peer path, ratio vs peer with its target, targets met as "k/n") of one bench for the summary table."""
    result = entry.get("result") or {}
    peer, ratio = "–", ""
    if name in PEERS:
        peer, key, _ = PEERS[name]
        ratio = "not measured"
        if result.get(key) is not None:
            target, met = check(name, key, result)
            ratio = f"`{key}` = {fmt(result[key])}" + (f" (target {target}: {met})" if target else "")
    if not entry.get("ok"):
        return peer, ratio, ""
    verdicts = [check(name, key, result)[1] for key in TARGETS.get(name, {}) if key in result]
    met = f"{verdicts.count('yes')}/{len(verdicts)}" if verdicts else "–"
    return peer, ratio, met


def _status(entry: dict[str, Any]) -> str:
    if entry.get("ok"):
        return "ok"
    return "**timed out**" if entry.get("timed_out") else "**failed**"


def bench_table(name: str, entry: dict[str, Any]) -> list[str]:
    """Markdown lines for one bench: heading, peer line, then key | measured | target | met (or the error)."""
    wall = entry.get("wall_s")
    lines = [f"### {name}: {_status(entry)}" + (f", {fmt(wall)} s" if wall is not None else ""), ""]
    if not entry.get("ok"):
        lines.append(f"Error: {fmt(entry.get('error') or 'unknown error', limit=500)}")
        tail = [t for t in (entry.get("stderr_tail") or "").splitlines() if t.strip()][-8:]
        if tail:
            lines += ["", "```", *(t.replace("```", "'''") for t in tail), "```"]
        return [*lines, ""]
    result: dict[str, Any] = entry.get("result") or {}
    if name in PEERS:
        peer, key, what = PEERS[name]
        ratio = fmt(result[key]) if result.get(key) is not None else "not measured"
        lines += [f"Peer path: {peer}; `{key}` = {ratio} ({what}).", ""]
    targets = TARGETS.get(name, {})
    ordered = [k for k in result if k in targets] + [k for k in result if k not in targets]
    lines += ["| key | measured | target | met |", "|---|---|---|---|"]
    for key in ordered:
        target, met = check(name, key, result)
        lines.append(f"| `{key}` | {fmt(result[key])} | {target} | {met} |")
    return [*lines, ""]


def render_section(report: dict[str, Any]) -> str:
    """The whole generated section, markers included, ending with a newline."""
    m = report.get("machine", {})
    benches: dict[str, dict[str, Any]] = report.get("benches", {})
    load_before = ", ".join(fmt(x) for x in m.get("load_before") or [])
    load_after = ", ".join(fmt(x) for x in m.get("load_after") or [])
    lines = [
        BEGIN,
        "## All benchmarks: `agentrl bench all --json` (generated)",
        "",
        "This section is written by `agentrl bench all`; edits inside the markers are lost on the next run.",
        "",
        f"- Command: `{report.get('command', '')}`"
        + (" (quick sizes: targets are for full sizes)" if report.get("quick") else ""),
        f"- Date: {m.get('date', '?')}; commit {m.get('git_sha', '?')}",
        f"- Machine: {m.get('cpu_model', '?')}, {m.get('cpus', '?')} cores, {fmt(m.get('ram_gib'))} GiB RAM, "
        f"GPU: {m.get('gpu') or 'none'}; {m.get('os', '?')}",
        f"- Load average (1, 5, 15 min): {load_before} before, {load_after} after",
        f"- Versions: Python {m.get('python', '?')}, torch {m.get('torch') or 'missing'}, "
        f"vllm {m.get('vllm') or 'missing'}, transformers {m.get('transformers') or 'missing'}",
        f"- Raw results: `{report.get('results_path', '?')}`",
        "",
        "| bench | status | wall (s) | peer path | ratio vs peer | targets met |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in benches.items():
        peer, ratio, met = _summary_cells(name, entry)
        wall = fmt(entry.get("wall_s")) if entry.get("wall_s") is not None else ""
        lines.append(f"| {name} | {_status(entry)} | {wall} | {peer} | {ratio} | {met} |")
    lines.append("")
    for name, entry in benches.items():
        lines += bench_table(name, entry)
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(text: str, section: str) -> str:
    """`text` with the marked section replaced by `section`, or `section` appended after a blank line."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin == -1 and end == -1:
        if not text:
            return section
        sep = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + sep + section
    if begin == -1 or end == -1 or end < begin or text.find(BEGIN, begin + 1) != -1:
        raise ValueError(
            f"BENCHMARKS.md has unbalanced or repeated {BEGIN} / {END} markers; fix them by hand first"
        )
    tail = end + len(END)
    if text.startswith("\r\n", tail):
        tail += 2
    elif text.startswith("\n", tail):
        tail += 1
    return text[:begin] + section + text[tail:]


def write_section(path: str | Path, section: str) -> Path:
    """Splice `section` into the file at `path` (created if missing) and replace the file atomically."""
    path = Path(path)
    old = path.read_bytes().decode("utf-8") if path.exists() else ""
    new = splice(old, section)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(new.encode("utf-8"))
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
