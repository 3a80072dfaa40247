"""Concurrent leasing and submitting: no job is ever leased twice at once, no trajectory stored twice.

Each thread opens its own Store (its own connection pool), as separate API processes on one database would.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from agentrl.schemas.trajectory import Trajectory
from services.rollout_api.schemas import JobSpec
from services.rollout_api.tables import leases, trajectories
from tests.services.conftest import job, traj

N_JOBS = 120
N_THREADS = 8


def _run_threads(target: Any, n: int) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def wrapped(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            target(i)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a leasing thread hung"
    return errors


def test_many_threads_leasing_never_double_lease(make_store: Any) -> None:
    make_store().enqueue([JobSpec.model_validate(job(i)) for i in range(N_JOBS)])
    stores = [make_store() for _ in range(N_THREADS)]
    got: dict[int, list[str]] = {i: [] for i in range(N_THREADS)}

    def worker(i: int) -> None:
        while True:
            batch = stores[i].lease(f"w{i}", max_jobs=1 + i % 4)
            if not batch:
                return
            got[i].extend(g.job.id or "" for g in batch)

    assert _run_threads(worker, N_THREADS) == []
    counts = Counter(j for ids in got.values() for j in ids)
    assert len(counts) == N_JOBS
    assert max(counts.values()) == 1, f"double-leased: {[j for j, c in counts.items() if c > 1]}"
    with stores[0].engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(leases)).scalar_one() == N_JOBS
    assert stores[0].metrics()["leased"] == N_JOBS


def test_concurrent_submissions_of_one_job_store_exactly_one(make_store: Any) -> None:
    s = make_store()
    s.enqueue([JobSpec.model_validate(job(0))])
    lease = s.lease("w")[0]
    stores = [make_store() for _ in range(N_THREADS)]
    results: list[tuple[bool, int]] = []
    t = Trajectory.model_validate(traj("job-0"))

    def submit(i: int) -> None:
        results.append(stores[i].submit("job-0", "w", lease.lease_id, t))

    assert _run_threads(submit, N_THREADS) == []
    assert sorted(d for d, _ in results) == [False] + [True] * (N_THREADS - 1)
    with s.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(trajectories)).scalar_one() == 1
    m = s.metrics()
    assert (m["submitted"], m["duplicates"], m["done"]) == (1, N_THREADS - 1, 1)
