"""Fixtures for the rollout API tests: a real SQLite file (and Postgres when available), a movable clock."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.rollout_api.settings import Settings
from services.rollout_api.store import Store, open_store


class FakeClock:
    """Time that moves only when a test says so: lease expiry without sleeping."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def job(i: int = 0, **over: Any) -> dict[str, Any]:
    spec = {
        "id": f"job-{i}",
        "task": {"task_id": f"t{i}", "prompt": "add 2 and 3"},
        "env": {"endpoint": "http://127.0.0.1:9000", "name": "tool_world"},
        "sampling": {"temperature": 0.8, "max_tokens": 256},
        "policy_version": 3,
        "group_id": f"g{i // 4}",
    }
    spec.update(over)
    return spec


def traj(job_id: str, n: int = 6, **over: Any) -> dict[str, Any]:
    t = {
        "id": f"tr-{job_id}",
        "job_id": job_id,
        "task_id": "t",
        "token_ids": list(range(n)),
        "loss_mask": [0, 0] + [1] * (n - 2),
        "logprobs": [None, None] + [-0.5] * (n - 2),
        "prompt_len": 2,
        "policy_versions": [3],
        "reward": 1.0,
    }
    t.update(over)
    return t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "rollout.db"


def _pg_bins() -> Path | None:
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / "initdb").exists():
            return base
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway Postgres cluster on loopback (initdb + pg_ctl as the `postgres` user when run as root)."""
    bins = _pg_bins()
    if bins is None:
        if os.environ.get("CI"):
            pytest.fail("postgres binaries missing (.ci/prepare.d/30-postgres.sh installs them)")
        pytest.skip("postgres is not installed (apt-get install postgresql)")
    # Not under pytest's basetemp: that is 0700 root, and the postgres user must reach its data directory.
    data = Path(tempfile.mkdtemp(prefix="agentrl-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(data, "postgres")
        run_as = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    port = free_port()
    db = str(data / "db")
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections=100"

    def run(cmd: list[str]) -> None:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:  # say which step failed and why, not just the exit code
            raise RuntimeError(f"{' '.join(cmd[:6])} failed ({out.returncode}): {out.stderr[-2000:]}")

    try:
        run([*run_as, str(bins / "initdb"), "-D", db, "-U", "agentrl", "--auth=trust", "-E", "UTF8"])
        run([*run_as, str(bins / "pg_ctl"), "-D", db, "-o", opts, "-l", str(data / "log"), "-w", "start"])
        run([str(bins / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "agentrl", "rollout"])
        yield f"postgresql://agentrl@127.0.0.1:{port}/rollout"
    finally:
        subprocess.run(
            [*run_as, str(bins / "pg_ctl"), "-D", db, "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(data, ignore_errors=True)


def reset_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    from services.rollout_api.settings import sqlalchemy_url

    eng = create_engine(sqlalchemy_url(url))
    with eng.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS trajectories, leases, jobs, counters CASCADE"))
    eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def store_url(request: pytest.FixtureRequest, db_path: Path) -> str:
    """The same store tests against a SQLite file and against Postgres."""
    if request.param == "sqlite":
        return str(db_path)
    url = request.getfixturevalue("postgres_url")
    reset_pg(url)
    return url


@pytest.fixture
def make_store(store_url: str, clock: FakeClock) -> Iterator[Any]:
    opened: list[Store] = []

    def make(**over: Any) -> Store:
        s = open_store(Settings(db_url=store_url, **over), clock=clock)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m services.rollout_api` as a real subprocess, so it can be SIGKILLed."""

    def __init__(
        self, db: str, log_path: Path, *, token: str = "", lease_s: float = 60.0, port: int = 0
    ) -> None:
        self.db, self.log_path, self.token, self.lease_s = db, log_path, token, lease_s
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, reap_interval_s: float = 0.5) -> Server:
        env = {**os.environ, "AGENTRL_API_TOKEN": self.token}
        cmd = [sys.executable, "-m", "services.rollout_api", "--db", self.db, "--port", str(self.port)]
        cmd += [
            "--lease-s",
            str(self.lease_s),
            "--reap-interval-s",
            str(reap_interval_s),
            "--log-level",
            "debug",
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the subprocess for its lifetime
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=_repo_root())
        log.close()
        self.wait_healthy()
        return self

    def wait_healthy(self, deadline_s: float = 60.0) -> None:
        import httpx

        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rollout API exited with {self.proc.returncode}: {self.log_path.read_text()}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"rollout API not healthy after {deadline_s}s: {self.log_path.read_text()}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no shutdown hooks, no flush
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(db: str, **kw: Any) -> Server:
        s = Server(db, tmp_path / f"server{len(servers)}.log", **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


class ThreadServer:
    """A real uvicorn server on loopback in a daemon thread: real HTTP without a subprocess's import time."""

    def __init__(self, app: Any, log_level: str = "warning") -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level)
        )
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        end = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("in-thread uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
