"""Fault injection with real processes (issue 6 item 5, issue 10 item 1): SIGKILL a worker mid-job, SIGKILL the
API mid-run and restart it on the same SQLite file. Each case checks nothing is lost and nothing duplicated.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from services.rollout_api.client import LeaseLost, RolloutClient, SubmissionRejected
from tests.services.conftest import job, traj

pytestmark = pytest.mark.slow

TOKEN = "fault-" + "z3" * 20

# A worker that leases two jobs (3 s leases), heartbeats them, announces them and then "works" until killed.
DOOMED_WORKER = textwrap.dedent(
    """
    import sys, time
    from services.rollout_api.client import RolloutClient
    c = RolloutClient(sys.argv[1], sys.argv[2], worker_id="doomed")
    got = c.lease(max_jobs=2, lease_s=3.0)
    for g in got:
        c.heartbeat(g.job.id, g.lease_id)
    print("LEASED", " ".join(g.job.id for g in got), flush=True)
    time.sleep(3600)
    """
)


def store_rows(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "jobs": dict(conn.execute("SELECT id, state FROM jobs").fetchall()),
            "trajectory_job_ids": [r[0] for r in conn.execute("SELECT job_id FROM trajectories")],
            "lease_outcomes": Counter(r[0] for r in conn.execute("SELECT outcome FROM leases")),
        }


def drain(client: RolloutClient, want: int, deadline_s: float = 90.0) -> list[str]:
    """Lease and submit until `want` trajectories are stored; returns the job ids this worker completed."""
    done: list[str] = []
    end = time.monotonic() + deadline_s
    while client.metrics()["done"] < want:
        assert time.monotonic() < end, f"jobs not all done: {client.metrics()}"
        batch = client.lease(max_jobs=2, lease_s=60)
        if not batch:
            time.sleep(0.1)
            continue
        for g in batch:
            try:
                client.submit(g.job.id or "", g.lease_id, traj(g.job.id or ""))
                done.append(g.job.id or "")
            except (SubmissionRejected, LeaseLost):
                pass
    return done


def test_worker_sigkilled_mid_job_is_re_leased_exactly_once(tmp_path: Path, server_factory: Any) -> None:
    db = tmp_path / "rollout.db"
    server = server_factory(str(db), token=TOKEN).start(reap_interval_s=0.2)
    with RolloutClient(server.url, TOKEN, worker_id="healthy", retries=3, backoff_s=0.05) as c:
        c.enqueue([job(i) for i in range(4)])
        script = tmp_path / "doomed.py"
        script.write_text(DOOMED_WORKER)
        proc = subprocess.Popen(
            [sys.executable, str(script), server.url, TOKEN],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        try:
            line = proc.stdout.readline().decode() if proc.stdout else ""
            assert line.startswith("LEASED"), (line, proc.stderr.read() if proc.stderr else b"")
            doomed_jobs = line.split()[1:]
            assert len(doomed_jobs) == 2
        finally:
            proc.kill()  # SIGKILL mid-job: no fail call, no more heartbeats
            proc.wait(timeout=30)
        completed = drain(c, want=4)
        assert sorted(completed) == ["job-0", "job-1", "job-2", "job-3"]
        m = c.metrics()
        assert (m["done"], m["requeues"], m["duplicates"], m["conflicts"]) == (4, 2, 0, 0)
        for jid in doomed_jobs:
            assert c.get_job(jid)["attempts"] == 2
    server.stop()
    rows = store_rows(db)
    assert rows["integrity"] == "ok"
    assert sorted(rows["trajectory_job_ids"]) == ["job-0", "job-1", "job-2", "job-3"]
    assert rows["lease_outcomes"] == Counter({"submitted": 4, "expired": 2})


def test_api_sigkilled_mid_run_restarts_with_store_intact(tmp_path: Path, server_factory: Any) -> None:
    db = tmp_path / "rollout.db"
    n_jobs, n_workers = 60, 4
    server = server_factory(str(db), token=TOKEN, lease_s=120).start(reap_interval_s=0.5)
    trainer = RolloutClient(server.url, TOKEN, retries=60, backoff_s=0.05, max_backoff_s=0.5)
    trainer.enqueue([job(i) for i in range(n_jobs)])
    # A lease held across the crash: it must still be live (and heartbeat-able) after the restart.
    holder = RolloutClient(
        server.url, TOKEN, worker_id="holder", retries=60, backoff_s=0.05, max_backoff_s=0.5
    )
    (held,) = holder.lease(max_jobs=1)

    errors: list[BaseException] = []
    completed: list[str] = []
    stop = threading.Event()

    def work(i: int) -> None:
        # Retries span the restart (60 tries, backoff capped at 0.5 s): every write is idempotent.
        with RolloutClient(
            server.url, TOKEN, worker_id=f"w{i}", retries=60, backoff_s=0.05, max_backoff_s=0.5
        ) as c:
            try:
                while not stop.is_set():
                    batch = c.lease(max_jobs=1 + i % 3)
                    if not batch:
                        if c.metrics()["queued"] == 0:
                            return
                        time.sleep(0.05)
                        continue
                    for g in batch:
                        try:
                            c.submit(g.job.id or "", g.lease_id, traj(g.job.id or ""))
                            completed.append(g.job.id or "")
                        except (SubmissionRejected, LeaseLost):
                            pass
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_workers)]
    for t in threads:
        t.start()
    end = time.monotonic() + 60
    while trainer.metrics()["done"] < 10:
        assert time.monotonic() < end, "workers made no progress"
        time.sleep(0.02)
    server.kill()  # SIGKILL while workers are leasing and submitting
    killed_at_done = store_rows(db)
    assert killed_at_done["integrity"] == "ok"
    assert Counter(killed_at_done["jobs"].values())["done"] < n_jobs, (
        "the kill came after the run, not during it"
    )
    server.start(reap_interval_s=0.5)  # same DB, same port
    assert holder.heartbeat(held.job.id or "", held.lease_id) > time.time()
    holder.submit(held.job.id or "", held.lease_id, traj(held.job.id or ""))
    for t in threads:
        t.join(timeout=120)
    stop.set()
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert errors == []
    m = trainer.metrics()
    assert (m["done"], m["queued"], m["leased"], m["failed"]) == (n_jobs, 0, 0, 0), m
    items: list[Any] = []
    cursor = 0
    while True:
        page = trainer.collect(since=cursor, limit=7)
        if not page.items:
            break
        items += page.items
        cursor = page.next_since
    ids = [i.job_id for i in items]
    assert sorted(ids) == sorted(f"job-{i}" for i in range(n_jobs)), "lost or duplicated trajectories"
    assert len(set(ids)) == len(ids)
    trainer.close()
    holder.close()
    server.stop()
    rows = store_rows(db)
    assert rows["integrity"] == "ok"
    assert len(rows["trajectory_job_ids"]) == len(set(rows["trajectory_job_ids"])) == n_jobs
    assert set(rows["jobs"].values()) == {"done"}
    # Every trajectory a worker was told "stored, not a duplicate" about is in the store.
    assert set(completed) | {held.job.id} <= set(rows["trajectory_job_ids"])


def test_load_driver_reports_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    from services.rollout_api.app import create_app
    from services.rollout_api.loadtest import run_load
    from tests.services.conftest import ThreadServer

    app = create_app(str(tmp_path / "rollout.db"), token=TOKEN, reap_interval_s=0.5)
    with ThreadServer(app) as server:
        out = run_load(server.url, TOKEN, workers=4, duration_s=1.0, tokens=64)
    assert out["trajectories"] == out["jobs_enqueued"] > 0
    assert (out["trajectories_lost"], out["trajectories_duplicated"], out["errors"]) == (0, 0, 0)
