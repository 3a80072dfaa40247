"""kill -9 at a checkpoint boundary-crossing moment, resume, and match an uninterrupted run bitwise (CPU)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from agentrl.train.checkpoint import latest_checkpoint
from agentrl.train.metrics import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4
COMPARED = ("loss/rl", "loss/ptx", "grad_norm", "reward/mean", "temperature", "qk_clip/max_logit_per_layer")


def _worker(run_dir: Path, steps: int = STEPS) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.train.rl_worker", str(run_dir), str(steps)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run_bitwise(tmp_path):
    straight = tmp_path / "straight"
    killed = tmp_path / "killed"
    ref = _worker(straight)
    victim = _worker(killed)
    # Kill as soon as the step-2 checkpoint is complete: the process is then inside step 3 (or saving it).
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ckpt = latest_checkpoint(killed / "checkpoints")
        if ckpt is not None and ckpt.name >= "step-000002":
            break
        assert victim.poll() is None, victim.communicate()[0]
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    _finish(ref)
    out = _finish(_worker(killed))
    resumed_at = int(out.split("starting at step ")[1].split()[0])
    assert 2 <= resumed_at < STEPS, out

    rows_a = [r for r in read_jsonl(straight / "metrics.jsonl") if "loss/rl" in r]
    rows_b = [r for r in read_jsonl(killed / "metrics.jsonl") if "loss/rl" in r]
    assert [r["step"] for r in rows_b] == list(range(1, STEPS + 1))  # no duplicated or missing steps
    for a, b in zip(rows_a, rows_b, strict=True):
        for key in COMPARED:
            assert a[key] == b[key], f"step {a['step']} {key}: {a[key]!r} != {b[key]!r}"
    state_a = torch.load(latest_checkpoint(straight / "checkpoints") / "state.pt", weights_only=False)
    state_b = torch.load(latest_checkpoint(killed / "checkpoints") / "state.pt", weights_only=False)
    assert state_a["step"] == state_b["step"] == STEPS
    for name, tensor in state_a["model"].items():
        assert torch.equal(tensor, state_b["model"][name]), name
    assert state_a["order"] == state_b["order"]
