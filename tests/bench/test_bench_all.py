"""`agentrl bench all`: the BENCHMARKS.md section writer, failure handling, and one end-to-end run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentrl.bench.all import run_one
from agentrl.bench.tables import BEGIN, END, check, render_section, write_section

REPO = Path(__file__).resolve().parents[2]

HEAD = "# Benchmarks\r\n\r\nHand-written intro, trailing spaces   \nünïcode | pipes\n\n"
TAIL = "\n## Later section\n\nmore text without final newline"


def _report(**benches: dict) -> dict:
    return {
        "command": "agentrl bench all --json",
        "quick": False,
        "machine": {"cpu_model": "Test CPU", "cpus": 2, "load_before": [1.0, 2.0, 3.0], "git_sha": "abc"},
        "results_path": "runs/bench/all.json",
        "benches": benches,
    }


OK_RL = {
    "ok": True,
    "wall_s": 12.0,
    "result": {"steps": 4, "step_time_ratio": 0.25, "notes": {"a": [1, 2]}, "label": "x|y"},
}
SLOW_OPTIM = {
    "ok": True,
    "wall_s": 30.0,
    "result": {"step_time_ratio_vs_torch": 1.5, "muon_vs_torch_max_abs_diff": 0.0},
}
TIMED_OUT = {
    "ok": False,
    "timed_out": True,
    "wall_s": 900.0,
    "result": None,
    "error": "timed out after 900 s",
    "stderr_tail": "loading model\nstill going\n",
}


def test_replaces_marked_section_and_leaves_the_rest_byte_identical(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    old = f"{BEGIN}\n## old generated\n| stale | 1 |\n{END}\n"
    md.write_bytes((HEAD + old + TAIL).encode())
    section = render_section(_report(rl=OK_RL))
    write_section(md, section)
    new = md.read_bytes()
    assert new == (HEAD + section + TAIL).encode()
    assert b"stale" not in new
    write_section(md, section)  # idempotent: a second run with the same results changes nothing
    assert md.read_bytes() == new
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]  # no temporary file left behind


def test_appends_when_absent_and_creates_a_missing_file(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    md.write_bytes(TAIL.encode())
    section = render_section(_report(rl=OK_RL))
    write_section(md, section)
    text = md.read_bytes().decode()
    assert text.startswith(TAIL) and text.endswith(section)
    assert text.count(BEGIN) == text.count(END) == 1
    fresh = tmp_path / "sub" / "NEW.md"
    write_section(fresh, section)
    assert fresh.read_text() == section


def test_unbalanced_markers_are_refused_and_the_file_kept(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(f"intro\n{BEGIN}\nno end marker\n")
    before = md.read_bytes()
    with pytest.raises(ValueError, match="markers"):
        write_section(md, render_section(_report(rl=OK_RL)))
    assert md.read_bytes() == before


def test_tables_show_peer_ratios_targets_failures_and_unknown_keys() -> None:
    section = render_section(_report(optim=SLOW_OPTIM, rl=OK_RL, rollout=TIMED_OUT))
    assert section.startswith(BEGIN) and section.endswith(END + "\n")
    lines = section.splitlines()
    # summary: peer path, the ratio with its target, targets met
    assert any(
        r.startswith("| rl | ok |") and "TRL GRPOTrainer" in r and "0.25" in r and "1/1" in r for r in lines
    )
    assert any(r.startswith("| optim | ok |") and "torch.optim.Muon" in r and "1/2" in r for r in lines)
    assert any(r.startswith("| rollout | **timed out** |") for r in lines)
    # per-bench tables: a met and an unmet target, a failure with its error and stderr tail
    assert "| `step_time_ratio` | 0.25 | ≤ 0.5 | yes |" in lines
    assert "| `step_time_ratio_vs_torch` | 1.5 | ≤ 1.2 | **no** |" in lines
    assert "### rollout: **timed out**, 900 s" in lines
    assert "Error: timed out after 900 s" in lines and "still going" in lines
    # unknown keys rendered generically: containers as JSON, pipes escaped so the table stays intact
    assert '| `notes` | {"a": [1, 2]} |  |  |' in lines
    assert "| `label` | x\\|y |  |  |" in lines


def test_target_checks_compare_against_other_keys_and_tolerate_missing_values() -> None:
    assert check("reliability", "faults_survived", {"faults_survived": 3, "faults_injected": 3})[1] == "yes"
    assert (
        check("reliability", "faults_survived", {"faults_survived": 2, "faults_injected": 3})[1] == "**no**"
    )
    assert check("rollout", "agentic_over_hf", {"agentic_over_hf": None})[1] == "?"
    assert check("rl", "steps", {"steps": 4}) == ("", "")


def test_a_bench_past_its_timeout_is_killed_and_recorded() -> None:
    entry = run_one("synth", quick=True, timeout_s=0.2)
    assert entry["ok"] is False and entry["timed_out"] is True
    assert "timed out after 0.2 s" in entry["error"]
    assert entry["wall_s"] < 60


@pytest.mark.slow
def test_bench_all_quick_end_to_end(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    md.write_bytes(HEAD.encode())
    results = tmp_path / "all.json"
    env = {
        **os.environ,
        "AGENTRL_BENCH_ONLY": "synth,nosuch",  # the cheapest real bench, and one that fails
        "AGENTRL_BENCH_MARKDOWN": str(md),
        "AGENTRL_BENCH_RESULTS": str(results),
    }
    out = subprocess.run(
        [sys.executable, "-m", "agentrl.cli.main", "bench", "all", "--quick", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["ok"] is False and summary["results_path"] == str(results)
    assert summary["benches"]["synth"]["ok"] is True
    assert "unknown benchmark 'nosuch'" in summary["benches"]["nosuch"]["error"]

    report = json.loads(results.read_text())
    assert report["benches"]["synth"]["result"]["synth_accepted"] == 500
    m = report["machine"]
    for key in ("cpu_model", "cpus", "ram_gib", "load_before", "load_after", "torch", "date", "git_sha"):
        assert m[key], key
    assert "AGENTRL_BENCH_ONLY=synth,nosuch" in report["command"] and "--quick" in report["command"]

    text = md.read_bytes().decode()
    assert text.startswith(HEAD) and text.count(BEGIN) == 1 and text.rstrip().endswith(END)
    lines = text.splitlines()
    assert "| `synth_accepted` | 500 | ≥ `synth_target` | yes |" in lines
    assert any(r.startswith("| nosuch | **failed** |") for r in lines)
    assert any(r.startswith("Error: exit code 2") for r in lines)
