"""Unit tests run against the policy's code (K2 §3.2.1, coding family: "competition problems with judges ...
human-written unit tests"; reward from hidden tests).

The verifier needs something that executes files: the `CodeRunner` protocol. The code environment's bubblewrap
sandbox (issue #4) is meant to satisfy it; `SubprocessCodeRunner` is a plain subprocess with rlimits and a
wall-clock kill, NOT a security boundary, for tests and trusted local use only.

Tests are hidden from the policy. `task["tests"]` is a list of Python snippets (usually `assert f(x) == y`),
each run in a copy of the solution's namespace; `task["setup"]` is optional code run before them. The harness
prints one result line tagged with a per-call random nonce that it reads from stdin before importing the
solution, so printing a fake "all passed" line does not work; exiting early (`os._exit(0)`) yields no result
line and scores 0. A solution that introspects the harness's frames could still forge the line: hidden tests in
one process cannot stop that, so the code env's own out-of-process reward is the stronger check.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from agentrl.rewards.base import RewardError, RewardResult, Subject, response_text, task_field

_FENCE = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_MARK = "AGENTRL_TEST_RESULT"

_HARNESS = (
    r'''
import json, sys, traceback
nonce = sys.stdin.readline().strip()
tests = json.load(open("tests.json"))
ns = {"__name__": "solution"}
try:
    exec(compile(open("solution.py").read(), "solution.py", "exec"), ns)
    if tests["setup"]:
        exec(compile(tests["setup"], "setup", "exec"), ns)
    load_error = None
except BaseException as e:  # noqa: a broken solution fails every test, it does not crash the harness
    load_error = f"{type(e).__name__}: {e}"
results = []
for i, src in enumerate(tests["tests"]):
    if load_error:
        results.append([False, load_error]); continue
    try:
        exec(compile(src, f"test_{i}", "exec"), dict(ns))
        results.append([True, ""])
    except BaseException as e:
        results.append([False, f"{type(e).__name__}: {str(e)[:200]}"])
sys.stdout.flush()
print("\n%s %s %s" % ("'''
    + _MARK
    + r"""", nonce, json.dumps(results)), flush=True)
"""
)


class ExecResult(BaseModel):
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False


@runtime_checkable
class CodeRunner(Protocol):
    """Runs `argv` in a fresh working directory holding `files`; the code env's sandbox implements this."""

    def run(
        self, files: dict[str, str], argv: list[str], *, stdin: str = "", timeout_s: float = 10.0
    ) -> ExecResult: ...


class SubprocessCodeRunner:
    """Local subprocess runner: temp dir, cleared env, rlimits, process-group kill. Not a sandbox."""

    def __init__(self, *, memory_mb: int = 1024, max_output_bytes: int = 1_000_000) -> None:
        self.memory_mb = memory_mb
        self.max_output_bytes = max_output_bytes

    def _limits(self, timeout_s: float) -> None:  # runs in the child before exec
        import resource

        cpu = max(1, int(timeout_s) + 1)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        mem = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (10 * 1024 * 1024, 10 * 1024 * 1024))
        os.setsid()

    def run(
        self, files: dict[str, str], argv: list[str], *, stdin: str = "", timeout_s: float = 10.0
    ) -> ExecResult:
        argv = [sys.executable if a == "python" else a for a in argv]
        with tempfile.TemporaryDirectory(prefix="agentrl-code-") as tmp:
            for name, text in files.items():
                target = Path(tmp, name).resolve()
                if Path(tmp).resolve() not in target.parents:
                    raise RewardError(f"file name {name!r} escapes the work dir")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            proc = subprocess.Popen(
                argv,
                cwd=tmp,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"},
                preexec_fn=lambda: self._limits(timeout_s),  # noqa: PLW1509 - single-threaded use
            )
            timed_out = False
            try:
                out, err = proc.communicate(stdin.encode(), timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                try:  # a process that left the group may still hold the pipes: do not wait forever
                    out, err = proc.communicate(timeout=2.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, err = b"", b"(output lost: pipes held open after kill)"
            with contextlib.suppress(ProcessLookupError):  # reap what the code left in its group
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=2.0)
        cap = self.max_output_bytes
        return ExecResult(
            exit_code=None if timed_out else proc.returncode,
            stdout=out[:cap].decode(errors="replace"),
            stderr=err[:cap].decode(errors="replace"),
            timed_out=timed_out,
        )


def extract_code(text: str) -> str | None:
    """The last fenced Python block; a response with no fence counts as code only if it compiles."""
    blocks = _FENCE.findall(text)
    if blocks:
        return blocks[-1]
    try:
        compile(text, "response", "exec")
    except SyntaxError:
        return None
    return text if text.strip() else None


class UnitTestVerifier:
    """Reward = fraction of hidden tests passed (`partial_credit`) or 1.0 only when all pass."""

    name = "unit_tests"

    def __init__(self, runner: CodeRunner, *, timeout_s: float = 10.0, partial_credit: bool = False) -> None:
        self.runner = runner
        self.timeout_s = timeout_s
        self.partial_credit = partial_credit

    def score(self, subject: Subject, task: Any) -> RewardResult:
        tests = task_field(task, "tests")
        if isinstance(tests, str):
            tests = [tests]
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise RewardError("task field 'tests' must be a non-empty list of Python snippets")
        code = extract_code(response_text(subject))
        if code is None:
            return RewardResult(
                value=0.0, details={"reason": "no code found", "passed": 0, "total": len(tests)}
            )
        nonce = secrets.token_hex(16)
        spec = {"tests": tests, "setup": task_field(task, "setup", required=False, default="") or ""}
        files = {"solution.py": code, "run_tests.py": _HARNESS, "tests.json": json.dumps(spec)}
        res = self.runner.run(
            files, ["python", "-I", "run_tests.py"], stdin=nonce + "\n", timeout_s=self.timeout_s
        )
        results = None
        for line in res.stdout.splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == _MARK and parts[1] == nonce:
                results = json.loads(parts[2])
        if results is None or len(results) != len(tests):
            reason = "timeout" if res.timed_out else "no result line (crashed or exited early)"
            return RewardResult(
                value=0.0,
                details={"reason": reason, "passed": 0, "total": len(tests), "stderr": res.stderr[-500:]},
            )
        passed = sum(bool(ok) for ok, _ in results)
        frac = passed / len(tests)
        return RewardResult(
            value=frac if self.partial_credit else float(passed == len(tests)),
            details={
                "passed": passed,
                "total": len(tests),
                "failures": [msg for ok, msg in results if not ok][:5],
            },
        )
