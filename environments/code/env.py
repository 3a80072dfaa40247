"""Code environment: the agent runs Python or shell in a fresh bubblewrap jail per call, then submits a
solution whose reward is the fraction of hidden unit tests it passes (K2 §3.2 "verifiable rewards":
coding tasks scored by unit tests in a sandbox).

Tools: `run_python(code, stdin)` and `run_shell(command)`. Final answer: the solution source (a fenced
```python block is unwrapped). Deviation, stated plainly: the judge runs the tests in the same interpreter as
the solution (as HumanEval-style harnesses do); the pass line carries a nonce read from stdin before the
solution loads, which stops printed forgeries but not a solution that introspects the judge's frames.
"""

from __future__ import annotations

import json
import re
import secrets
from importlib import resources
from typing import Any

from environments.protocol import (
    EnvError,
    Message,
    Observation,
    StepResult,
    ToolEnvironment,
    ToolError,
    ToolRegistry,
    UnknownTaskError,
)
from environments.sandbox import ExecResult, Sandbox, SandboxLimits

SYSTEM = (
    "You solve programming tasks in Python. Use run_python / run_shell to experiment (each call runs in a "
    "fresh, offline sandbox; nothing persists between calls). When done, reply with the full solution "
    "source as your final answer."
)

JUDGE = """
import json, sys


def _main():
    nonce = sys.stdin.readline().strip()
    sys.stdin.close()
    out = sys.stdout
    tests = json.loads(open("tests.json").read())
    passed, ns = [], {"__name__": "__solution__"}
    try:
        exec(compile(open("solution.py").read(), "solution.py", "exec"), ns)
        load_error = None
    except BaseException as e:
        load_error = f"{type(e).__name__}: {e}"
    if load_error is None:
        for i, t in enumerate(tests):
            try:
                exec(compile(t, f"test_{i}", "exec"), ns)
                passed.append(i)
            except BaseException:
                pass
    out.write("\\n" + nonce + json.dumps({"passed": passed, "load_error": load_error}) + "\\n")
    out.flush()


_main()
"""


def load_tasks() -> dict[str, dict[str, Any]]:
    data = json.loads(resources.files("environments.code").joinpath("tasks.json").read_text())
    return {t["id"]: t for t in data["tasks"]}


def extract_code(answer: str) -> str:
    """The solution source: the last ```python (or bare ```) block if any, else the whole answer."""
    blocks = re.findall(r"```(?:python|py)?\s*\n(.*?)```", answer, flags=re.S)
    return blocks[-1] if blocks else answer


def format_exec(res: ExecResult, max_chars: int = 8000) -> str:
    parts = [f"status: {res.status}" + (f" (exit code {res.exit_code})" if res.exit_code else "")]
    if res.message:
        parts.append(res.message)
    if res.stdout:
        parts.append("stdout:\n" + res.stdout[-max_chars:])
    if res.stderr:
        parts.append("stderr:\n" + res.stderr[-max_chars:])
    return "\n".join(parts)


class CodeEnv(ToolEnvironment):
    name = "code"
    description = "Python coding tasks; code runs in a fresh sandbox per call; reward = hidden tests passed."
    version = "0.1.0"
    blocking = True
    max_steps = 16

    def __init__(
        self, sandbox: Sandbox | None, unavailable_reason: str = "", tasks: dict | None = None
    ) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.unavailable_reason = unavailable_reason
        self.tasks = tasks if tasks is not None else load_tasks()
        self.task: dict[str, Any] = {}
        self.calls = 0
        self.last_result: dict[str, Any] = {}
        reg = ToolRegistry()

        @reg.tool(description="Run a Python 3 program in a fresh offline sandbox; returns stdout/stderr.")
        def run_python(code: str, stdin: str = "") -> str:
            return format_exec(self._exec(["python3", "-I", "main.py"], files={"main.py": code}, stdin=stdin))

        @reg.tool(description="Run a shell command (/bin/sh -c) in a fresh offline sandbox.")
        def run_shell(command: str) -> str:
            return format_exec(self._exec(["/bin/sh", "-c", command]))

        self.registry = reg

    def _exec(self, argv: list[str], **kw: Any) -> ExecResult:
        if self.sandbox is None:
            raise ToolError(f"code execution is disabled on this server: {self.unavailable_reason}")
        self.calls += 1
        return self.sandbox.run(argv, **kw)

    def task_ids(self) -> list[str]:
        return sorted(self.tasks)

    def reset(
        self, task_id: str | None = None, task_spec: dict[str, Any] | None = None, seed: int | None = None
    ) -> Observation:
        if task_spec is not None:
            prompt, tests = task_spec.get("prompt"), task_spec.get("tests")
            if not isinstance(prompt, str) or not isinstance(tests, list) or not tests:
                raise EnvError(
                    "task_spec needs 'prompt' (string) and 'tests' (non-empty list of Python asserts)"
                )
            if not all(isinstance(t, str) for t in tests):
                raise EnvError("task_spec 'tests' must be strings of Python code")
            self.task = {"id": task_spec.get("id"), "prompt": prompt, "tests": tests}
        else:
            if task_id is None:
                import random

                task_id = random.Random(seed).choice(sorted(self.tasks))
            if task_id not in self.tasks:
                raise UnknownTaskError(f"unknown task {task_id!r}; known: {', '.join(sorted(self.tasks))}")
            self.task = self.tasks[task_id]
        return Observation(
            task_id=self.task.get("id"),
            messages=[
                Message(role="system", content=SYSTEM),
                Message(role="user", content=self.task["prompt"]),
            ],
            tools=self.registry.openai(),
        )

    def finish(self, answer: str) -> StepResult:
        passed, total, detail = self.judge(extract_code(answer))
        self.last_result = {"passed": passed, "total": total, **detail}
        return StepResult(reward=passed / total, done=True, info=self.last_result)

    def judge(self, code: str) -> tuple[int, int, dict[str, Any]]:
        """Run the hidden tests against `code` in a jail: (passed, total, details)."""
        tests = self.task["tests"]
        if self.sandbox is None:
            return 0, len(tests), {"error": f"code execution disabled: {self.unavailable_reason}"}
        nonce = secrets.token_hex(16)
        res = self.sandbox.run(
            ["python3", "-I", "judge.py"],
            files={"judge.py": JUDGE, "solution.py": code, "tests.json": json.dumps(tests)},
            stdin=nonce + "\n",
            limits=self.sandbox.limits.model_copy(update={"wall_timeout_s": 20.0}),
        )
        for line in reversed(res.stdout.splitlines()):
            if line.startswith(nonce):
                verdict = json.loads(line[len(nonce) :])
                passed = sorted(set(verdict["passed"]) & set(range(len(tests))))
                return len(passed), len(tests), {"passed_tests": passed, "load_error": verdict["load_error"]}
        return 0, len(tests), {"error": f"judge did not finish: {res.status} {res.message}".strip()}

    def state(self) -> dict[str, Any]:
        return {
            "task_id": self.task.get("id"),
            "tool_calls": self.calls,
            "steps": self.steps,
            **self.last_result,
        }


def default_limits() -> SandboxLimits:
    return SandboxLimits(wall_timeout_s=10, cpu_s=10, memory_mb=1024, tmpfs_mb=64)
