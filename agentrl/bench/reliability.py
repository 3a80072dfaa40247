"""`agentrl bench reliability`: the figures of issue 10 (fault injection, API fuzzing, auth, load, no data loss).

- `faults_injected` / `faults_survived`: the fault cases of `agentrl.reliability.faults.FAULT_CASES`
  (SIGKILLed env server, worker, rollout API and trainer; a silent engine; full disks), run as pytest cases.
- `fuzz_cases` / `fuzz_5xx`: schemathesis (positive and negative cases per OpenAPI operation) plus hostile
  inputs against every FastAPI server (code, tool_world, reasoning, kv demo env, rollout API); `fuzz_unhealthy`
  counts servers whose /health failed afterwards. `auth_checks` / `auth_leaks`: the route-table auth audit.
- `load_sessions` / `load_steps` / `load_errors`: concurrent sessions against a tool_world server process.
- `trajectories_lost` / `trajectories_duplicated`: the rollout API load (workers leasing and submitting).
- `*_rss_*`: server RSS (MiB) after a warm-up round at full concurrency, and `*_rss_growth_after_warmup_mib`
  from there to the end of the load; `memory_bounded` when both stay within `*_rss_margin_mib`
  (max(64 MiB, 25 % of the warm RSS), `agentrl.reliability.load`).

Full sizes: 256 sessions / 10k steps, 64 workers / 30 s warm-up + 120 s, 10 examples per operation and mode.
`--quick`: 64 sessions / 1k steps, 16 workers / 10 s warm-up + 20 s, 3 examples, and the fault cases minus the two slowest
(the real worker process with the warm-started policy, the trainer SIGKILL/resume). Acceptance: survived == injected, fuzz_5xx == load_errors == lost == duplicated == 0.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TOKEN = "bench-reliability-token-" + "k9" * 12

# Minutes each on CPU (the warm-started tool policy; two short RL runs): full runs only.
SLOW_FAULTS = ("rollout worker SIGKILLed mid-job (real worker process)", "trainer SIGKILLed and resumed")


def fuzz_all(workdir: Path, max_examples: int) -> dict[str, Any]:
    from agentrl.reliability.auth import audit_auth
    from agentrl.reliability.fuzz import fuzz_server
    from agentrl.reliability.servers import ALL_SERVERS, build

    out: dict[str, Any] = {
        "fuzz_cases": 0,
        "fuzz_5xx": 0,
        "fuzz_unhealthy": 0,
        "auth_checks": 0,
        "auth_leaks": 0,
    }
    failures: list[str] = []
    auth_dir = workdir / "auth"  # a separate rollout-API store for the token-protected instance
    auth_dir.mkdir(exist_ok=True)
    for name in ALL_SERVERS:
        app, openapi_path = build(name, workdir)
        rep = fuzz_server(app, name, openapi_path, max_examples)
        out["fuzz_cases"] += rep.cases
        out["fuzz_5xx"] += rep.five_xx
        out["fuzz_unhealthy"] += not rep.healthy_after
        out[f"fuzz_cases_{name}"] = rep.cases
        failures += [f"{name}: {f}" for f in rep.failures[:3]]
        app, _ = build(name, auth_dir, token=TOKEN)
        checked, leaks = audit_auth(app, TOKEN)
        out["auth_checks"] += checked
        out["auth_leaks"] += len(leaks)
        failures += [f"{name} auth: {leak}" for leak in leaks[:3]]
    if failures:
        out["fuzz_failures"] = failures
    return out


def run(quick: bool = False) -> dict[str, Any]:
    from agentrl.reliability.faults import FAULT_CASES, run_fault_cases
    from agentrl.reliability.load import api_load, env_load

    t0 = time.monotonic()
    out: dict[str, Any] = {"quick": quick}
    with tempfile.TemporaryDirectory(prefix="agentrl-reliability-") as tmp:
        work = Path(tmp)
        t = time.monotonic()
        out.update(fuzz_all(work, max_examples=3 if quick else 10))
        out["fuzz_s"] = round(time.monotonic() - t, 1)

        t = time.monotonic()
        sessions, steps = (64, 1000) if quick else (256, 10_000)
        env = env_load(sessions, steps)
        out.update(
            {
                "load_sessions": env["sessions"],
                "load_steps": env["steps"],
                "load_errors": env["errors"] + (not env["healthy_after"]),
                "load_steps_per_s": env["steps_per_s"],
                "env_rss_warm_mib": env["rss_warm_mib"],
                "env_rss_growth_after_warmup_mib": env["rss_growth_after_warmup_mib"],
                "env_rss_margin_mib": env["rss_margin_mib"],
            }
        )
        if env["error_samples"]:
            out["load_error_samples"] = env["error_samples"]
        workers, duration = (16, 20.0) if quick else (64, 120.0)
        api = api_load(work, workers, duration)
        out.update(
            {
                "api_workers": workers,
                "api_duration_s": api["duration_s"],
                "api_trajectories": api["trajectories"],
                "api_errors": api["errors"] + (not api["healthy_after"]),
                "trajectories_lost": api["trajectories_lost"],
                "trajectories_duplicated": api["trajectories_duplicated"],
                "api_submits_per_s": api["submits_per_s"],
                "api_warmup_s": api["warmup_s"],
                "api_rss_warm_mib": api["rss_warm_mib"],
                "api_rss_peak_mib": api["rss_peak_mib"],
                "api_rss_growth_after_warmup_mib": api["rss_growth_after_warmup_mib"],
                "api_rss_margin_mib": api["rss_margin_mib"],
            }
        )
        out["memory_bounded"] = bool(env["rss_bounded"] and api["rss_bounded"])
        out["load_s"] = round(time.monotonic() - t, 1)

        t = time.monotonic()
        cases = {k: v for k, v in FAULT_CASES.items() if not (quick and k in SLOW_FAULTS)}
        out.update(run_fault_cases(REPO, work, cases))
        out["faults_s"] = round(time.monotonic() - t, 1)
    out["ok"] = (
        out["faults_survived"] == out["faults_injected"] > 0
        and out["fuzz_5xx"] == out["fuzz_unhealthy"] == out["auth_leaks"] == 0
        and out["load_errors"] == out["api_errors"] == 0
        and out["trajectories_lost"] == out["trajectories_duplicated"] == 0
        and out["memory_bounded"]
    )
    out["total_s"] = round(time.monotonic() - t0, 1)
    return out


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
