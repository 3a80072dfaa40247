"""Unit-test rewards through the code environment (issue #4): the real bubblewrap sandbox, two ways.

- `SandboxCodeRunner` adapts `environments.sandbox.Sandbox` (a fresh jail per call) to the `CodeRunner`
  protocol, so `UnitTestVerifier` runs its harness jailed, in process.
- `CodeEnvVerifier` asks a running code environment server over HTTP (`environments.protocol.EnvClient`):
  a session from the task spec (prompt + hidden tests), then the response as the final answer; the env's
  reward is the fraction of tests passed. Use it when rewards are computed away from the sandbox host.
Environment failures (server down, 5xx, sandbox disabled) are abstentions, not zeros: a broken sandbox must
not teach the policy that its code is wrong. Imports of `environments` are deferred: it has no torch, but the
rewards package should import without it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from agentrl.rewards.base import RewardError, RewardResult, Subject, response_text, task_field
from agentrl.rewards.verifiers.code import ExecResult

if TYPE_CHECKING:
    from environments.protocol.client import EnvClient
    from environments.sandbox import Sandbox


class SandboxCodeRunner:
    """`CodeRunner` over the code env's jail. `python` in argv means the jail's `python3`."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def run(
        self, files: dict[str, str], argv: list[str], *, stdin: str = "", timeout_s: float = 10.0
    ) -> ExecResult:
        argv = ["python3" if a == "python" else a for a in argv]
        limits = self.sandbox.limits.model_copy(update={"wall_timeout_s": timeout_s})
        res = self.sandbox.run(argv, files=dict(files), stdin=stdin, limits=limits)
        if res.status == "sandbox_error":
            raise RewardError(f"sandbox failed to run the tests: {res.message}")
        return ExecResult(
            exit_code=res.exit_code, stdout=res.stdout, stderr=res.stderr, timed_out=res.status == "timeout"
        )


class CodeEnvVerifier:
    """Reward = the code env's hidden-test pass fraction (`partial_credit`), or 1.0 only if all pass."""

    name = "unit_tests"

    def __init__(self, client: EnvClient, *, partial_credit: bool = False) -> None:
        self.client = client
        self.partial_credit = partial_credit

    def score(self, subject: Subject, task: Any) -> RewardResult:
        from environments.protocol.client import EnvClientError

        tests = task_field(task, "tests")
        spec = {
            "id": task_field(task, "id", required=False),
            "prompt": task_field(task, "prompt", required=False, default="") or "(hidden-test grading)",
            "tests": tests,
        }
        session = None
        try:
            obs = self.client.reset(spec)
            session = obs.session_id
            step = self.client.step(session, {"final_answer": response_text(subject)})
        except EnvClientError as exc:
            if exc.status_code < 500 and exc.status_code != 429:
                raise RewardError(f"code env rejected the request: {exc}") from None
            return RewardResult.abstain(f"code env error: {exc}")
        except Exception as exc:  # transport errors, timeouts: the env is unavailable, not the code wrong
            return RewardResult.abstain(f"code env unreachable: {type(exc).__name__}: {exc}")
        finally:
            if session:  # best effort; the server reaps idle sessions anyway
                with contextlib.suppress(Exception):
                    self.client.close_session(session)
        info = step.info
        error = str(info.get("error", ""))
        if "disabled" in error or "sandbox_error" in error:  # the env's fault; a timeout is the code's
            return RewardResult.abstain(f"code env could not run the tests: {error}", **info)
        frac = float(step.reward)
        return RewardResult(value=frac if self.partial_credit else float(frac >= 1.0), details=dict(info))
