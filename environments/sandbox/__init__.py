"""Per-call bubblewrap jails for untrusted code (see docs/environments.md, "Security model").

sb = make_sandbox()                        # probes; raises SandboxUnavailable unless unsafe mode
res = sb.run(["python3", "-c", "print(1)"], files={"a.txt": "x"}, return_files=["out.txt"])
res.status  # ok | error | timeout | output_limit | killed | sandbox_error
"""

from environments.sandbox.jail import SlotsExhausted
from environments.sandbox.limits import ExecResult, SandboxLimits
from environments.sandbox.probe import UNSAFE_ENV, ProbeResult, make_sandbox, probe
from environments.sandbox.runner import Sandbox, SandboxUnavailable

__all__ = [
    "UNSAFE_ENV",
    "ExecResult",
    "ProbeResult",
    "Sandbox",
    "SandboxLimits",
    "SandboxUnavailable",
    "SlotsExhausted",
    "make_sandbox",
    "probe",
]
