"""`agentrl bench envs`: sandbox latency/throughput vs `docker run`, env-server step rate, and a load test.

Measured side by side in one run on this machine:
- `sandbox_p50_ms`: one bubblewrap jail running `python3 -c 'print(1)'`, sequentially and back to back, with
  the default sandbox, i.e. the warm pool on (environments/sandbox/pool.py; target <= 30 ms);
- `sandbox_cold_p50_ms`: the same with the pool off (every call starts its jail: the pre-pool number);
- `sandbox_exec_per_s`: the default sandbox with 4 concurrent callers (target >= 40/s on 2 cores);
- `docker_run_p50_ms`: one `docker run --rm --network none BASE python3 -c 'print(1)'` per execution
  (None without a docker engine or base image);
- `tool_world_steps_per_s`, `tool_world_p99_ms`: 64 concurrent sessions stepping a tool_world server
  (uvicorn in its own process, client here) with one tool call per step (targets >= 1000/s, p99 <= 50 ms);
- `load_sessions`, `load_steps`, `load_errors`: 256 concurrent sessions and 10k steps, expecting 0 errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def _sandbox_latency(sb: Any, argv: list[str], runs: int) -> list[float]:
    lat = []
    for _ in range(runs):
        t = time.perf_counter()
        res = sb.run(argv)
        lat.append((time.perf_counter() - t) * 1000)
        assert res.stdout == "1\n", res
    return lat


def bench_sandbox(runs: int, concurrent_runs: int, workers: int = 4, cold_runs: int = 30) -> dict[str, Any]:
    """Jailed `print(1)`: sequential back-to-back latency and 4-caller throughput with the default sandbox
    (warm pool on), and, side by side, the sequential latency with the pool off (`sandbox_cold_p50_ms`)."""
    from environments.sandbox import Sandbox, SandboxUnavailable, probe

    try:
        sb = Sandbox("bwrap")
        cold = Sandbox("bwrap", pool_size=0)
    except SandboxUnavailable as exc:
        return {"sandbox_p50_ms": None, "sandbox_exec_per_s": None, "sandbox_note": str(exc)}
    try:
        pr = probe(cold)
        if not pr.ok:
            return {"sandbox_p50_ms": None, "sandbox_exec_per_s": None, "sandbox_note": pr.reason}
        argv = ["python3", "-c", "print(1)"]
        cold.run(argv)  # warm the page cache
        cold_lat = _sandbox_latency(cold, argv, cold_runs)
        if sb.warm is not None:
            sb.run(argv)  # a first call of a flavour may run cold; the pool then parks that flavour
            sb.warm.wait_ready(60)
        lat = _sandbox_latency(sb, argv, runs)
        t = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            outs = list(pool.map(lambda _: sb.run(argv).stdout, range(concurrent_runs)))
        wall = time.perf_counter() - t
        stats = sb.warm.stats.as_dict() if sb.warm is not None else None
    finally:
        sb.close()
    return {
        "sandbox_p50_ms": round(statistics.median(lat), 2),
        "sandbox_p90_ms": round(_pct(lat, 0.9), 2),
        "sandbox_exec_per_s": round(concurrent_runs / wall, 1),
        "sandbox_errors": sum(o != "1\n" for o in outs),
        "sandbox_leftover_processes": sb.leftovers + cold.leftovers,
        "sandbox_pool_size": sb.warm.size if sb.warm is not None else 0,
        "sandbox_pool_stats": stats,
        "sandbox_cold_p50_ms": round(statistics.median(cold_lat), 2),
    }


def bench_docker(runs: int, image: str = "agentrl/base:bookworm") -> dict[str, Any]:
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode:
        return {"docker_run_p50_ms": None, "docker_note": "no docker engine"}
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
        return {
            "docker_run_p50_ms": None,
            "docker_note": f"image {image} missing (docker/build_base_image.sh)",
        }
    lat = []
    for _ in range(runs):
        t = time.perf_counter()
        out = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", image, "python3", "-c", "print(1)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        lat.append((time.perf_counter() - t) * 1000)
        if out.stdout != "1\n":
            return {"docker_run_p50_ms": None, "docker_note": f"docker run failed: {out.stderr[-300:]}"}
    return {"docker_run_p50_ms": round(statistics.median(lat), 1)}


class _Server:
    """An env server in its own process (so the client does not share its GIL), on a free port."""

    def __init__(self, factory: str, max_sessions: int = 4096) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, "AGENTRL_ENV_MAX_SESSIONS": str(max_sessions), "AGENTRL_ENV_TOKEN": ""}
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {factory} exited: {self.proc.stderr.read().decode()[-2000:]}")
        self.close()
        raise RuntimeError(f"server {factory} did not start")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _args_for(schema: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Schema-shaped arguments (type-correct values for required fields), so steps execute the tool."""
    out: dict[str, Any] = {}
    props = schema.get("properties", {})
    for name in schema.get("required", []):
        p = props.get(name, {})
        if "enum" in p:
            out[name] = rng.choice(p["enum"])
            continue
        t = p.get("type", "string")
        t = t[0] if isinstance(t, list) else t
        out[name] = {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}.get(t, "x")
    return out


async def _drive(url: str, sessions: int, total_steps: int, tasks: list[Any]) -> dict[str, Any]:
    """`sessions` concurrent episodes, `total_steps` steps in all (sessions are re-opened when done)."""
    from environments.protocol import Action, AsyncEnvClient, ToolCall

    lat: list[float] = []
    errors: list[str] = []
    left = [total_steps]
    async with AsyncEnvClient(url, timeout=60, retries=0, max_connections=sessions) as env:

        async def worker(i: int) -> None:
            rng = random.Random(i)
            obs = None
            while left[0] > 0:
                left[0] -= 1
                try:
                    if obs is None:
                        obs = await env.reset(tasks[i % len(tasks)] if tasks else None, seed=i)
                    tool = rng.choice(obs.tools)["function"]
                    call = ToolCall(
                        id=f"c{i}",
                        name=tool["name"],
                        arguments=json.dumps(_args_for(tool["parameters"], rng)),
                    )
                    t = time.perf_counter()
                    res = await env.step(obs.session_id, Action(tool_calls=[call]))
                    lat.append((time.perf_counter() - t) * 1000)
                    if res.done:
                        await env.close_session(obs.session_id)
                        obs = None
                except Exception as exc:  # counted, not raised: the load test reports errors
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    obs = None

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(sessions)))
        wall = time.perf_counter() - t0
    return {"steps": len(lat), "wall": wall, "lat": lat, "errors": errors}


def bench_server(
    factory: str, sessions: int, steps: int, load_sessions: int, load_steps: int
) -> dict[str, Any]:
    server = _Server(factory)
    try:
        warm = asyncio.run(_drive(server.url, min(sessions, 16), 200, []))
        if warm["errors"]:
            raise RuntimeError(f"warm-up failed: {warm['errors'][:3]}")
        r = asyncio.run(_drive(server.url, sessions, steps, []))
        load = asyncio.run(_drive(server.url, load_sessions, load_steps, []))
    finally:
        server.close()
    return {
        "steps_per_s": round(r["steps"] / r["wall"], 1),
        "p50_ms": round(_pct(r["lat"], 0.5), 2),
        "p99_ms": round(_pct(r["lat"], 0.99), 2),
        "errors": len(r["errors"]),
        "load_sessions": load_sessions,
        "load_steps": load["steps"],
        "load_errors": len(load["errors"]),
        "load_steps_per_s": round(load["steps"] / load["wall"], 1),
        "load_error_samples": load["errors"][:3],
    }


def run(quick: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"quick": quick, "cpus": os.cpu_count()}
    out.update(bench_sandbox(runs=20 if quick else 100, concurrent_runs=40 if quick else 200))
    out.update(bench_docker(runs=3 if quick else 10))
    if out.get("docker_run_p50_ms") and out.get("sandbox_p50_ms"):
        out["docker_over_sandbox"] = round(out["docker_run_p50_ms"] / out["sandbox_p50_ms"], 1)
    try:
        import environments.tool_world.server  # noqa: F401

        factory, note = "environments.tool_world.server:create_app", "tool_world server"
    except ImportError:
        factory, note = "environments.protocol.demo:create_app", "tool_world missing: kv demo env instead"
    tw = bench_server(
        factory,
        sessions=64,
        steps=2000 if quick else 10_000,
        load_sessions=256,
        load_steps=2560 if quick else 10_000,
    )
    out.update(
        {
            "tool_world_steps_per_s": tw["steps_per_s"],
            "tool_world_p50_ms": tw["p50_ms"],
            "tool_world_p99_ms": tw["p99_ms"],
            "tool_world_errors": tw["errors"],
            "tool_world_note": note + ", 64 concurrent sessions, server in its own process",
            "load_sessions": tw["load_sessions"],
            "load_steps": tw["load_steps"],
            "load_errors": tw["load_errors"],
            "load_steps_per_s": tw["load_steps_per_s"],
        }
    )
    if tw["load_error_samples"]:
        out["load_error_samples"] = tw["load_error_samples"]
    return out


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
