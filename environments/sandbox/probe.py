"""Startup probe: prove the jail isolates before serving code execution; fail closed otherwise.

Inside a default docker container bwrap cannot create namespaces (sandbox.md §0.3), and a host without
bubblewrap has no jail at all. Then code execution is refused, unless the operator sets
AGENTRL_SANDBOX_UNSAFE=1, which runs code with rlimits only and is logged at CRITICAL on every start.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from environments.sandbox.limits import SandboxLimits
from environments.sandbox.runner import Sandbox, SandboxUnavailable

log = logging.getLogger(__name__)

UNSAFE_ENV = "AGENTRL_SANDBOX_UNSAFE"

# Runs inside the jail; every line is a property the jail must have.
_CHECK = r"""
import json, os, socket
out = {"uid": os.getuid(), "euid": os.geteuid(), "ifaces": [n for _, n in socket.if_nameindex()],
       "env": sorted(os.environ), "pid": os.getpid()}
try:
    s = socket.create_connection(("1.1.1.1", 53), timeout=0.5); s.close(); out["net"] = True
except OSError:
    out["net"] = False
print(json.dumps(out))
"""


@dataclass
class ProbeResult:
    ok: bool
    mode: str
    reason: str = ""


def probe(sandbox: Sandbox) -> ProbeResult:
    """Run a check program in the jail and verify: non-root uid, no network, cleared env, own pid ns.

    With a warm pool the check runs twice: in a freshly started jail, then in a parked one (pool.py). A
    parked jail that fails the check only disables the pool (logged as an error); cold jails still serve."""
    result = _check(
        sandbox, ["python3", "-I", "-S", "-c", _CHECK], SandboxLimits(wall_timeout_s=20), warm=False
    )
    if result.ok and sandbox.warm is not None:
        sandbox.warm.wait_ready(30)
        taken = sandbox.warm.stats.taken
        limits = sandbox.limits.model_copy(update={"wall_timeout_s": 20})  # the pool's jail limits
        warm = _check(sandbox, ["python3", "-I", "-c", _CHECK], limits, warm=True)
        if not warm.ok or sandbox.warm.stats.taken != taken + 1:
            log.error("sandbox warm pool disabled: its jails failed the probe (%s)", warm.reason or "unused")
            sandbox.disable_pool()
    return result


def _check(sandbox: Sandbox, argv: list[str], limits: SandboxLimits, warm: bool) -> ProbeResult:
    res = sandbox.run(argv, limits=limits, warm=warm)
    if res.status != "ok":
        return ProbeResult(
            False, sandbox.mode, f"jail failed to run: {res.status} {res.message} {res.stderr[-500:]}"
        )
    try:
        facts = json.loads(res.stdout)
    except ValueError:
        return ProbeResult(False, sandbox.mode, f"unexpected probe output: {res.stdout[:200]!r}")
    problems = []
    if facts["uid"] == 0 or facts["euid"] == 0:
        problems.append("code runs as root")
    if facts["net"] or set(facts["ifaces"]) - {"lo"}:
        problems.append(f"network reachable (interfaces {facts['ifaces']})")
    if set(facts["env"]) - {"PATH", "HOME", "LANG", "PWD", "PYTHONDONTWRITEBYTECODE", "LC_CTYPE"}:
        problems.append(f"environment not cleared: {facts['env']}")
    if facts["pid"] > 10:
        problems.append("no private pid namespace")
    if problems:
        return ProbeResult(False, sandbox.mode, "; ".join(problems))
    return ProbeResult(True, sandbox.mode)


def unsafe_requested() -> bool:
    return os.environ.get(UNSAFE_ENV, "").strip().lower() in ("1", "true", "yes")


def make_sandbox(limits: SandboxLimits | None = None, *, allow_unsafe: bool | None = None) -> Sandbox:
    """A probed bwrap sandbox, or an unsafe one when isolation fails *and* unsafe mode was asked for.

    Raises SandboxUnavailable (with the reason) when isolation fails and unsafe mode is off."""
    allow_unsafe = unsafe_requested() if allow_unsafe is None else allow_unsafe
    reason = ""
    try:
        sb = Sandbox("bwrap", limits)
        result = probe(sb)
        if result.ok:
            return sb
        reason = result.reason
    except SandboxUnavailable as exc:
        reason = str(exc)
    if not allow_unsafe:
        raise SandboxUnavailable(f"isolation unavailable: {reason} (set {UNSAFE_ENV}=1 to run code unsafely)")
    log.critical(
        "!!! %s=1: sandbox isolation unavailable (%s); running code WITHOUT a jail !!!", UNSAFE_ENV, reason
    )
    return Sandbox("unsafe", limits)
