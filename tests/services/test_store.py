"""Store semantics on a real SQLite file (and Postgres, marked slow): leases, requeue, exactly-once, cursors."""

from __future__ import annotations

from typing import Any

import pytest

from agentrl.errors import ConfigError
from agentrl.schemas.trajectory import Trajectory
from services.rollout_api.errors import BadRequest, Conflict, JobNotFound
from services.rollout_api.schemas import JobSpec
from tests.services.conftest import FakeClock, job, traj


def specs(n: int, **over: Any) -> list[JobSpec]:
    return [JobSpec.model_validate(job(i, **over)) for i in range(n)]


def T(job_id: str, **over: Any) -> Trajectory:
    return Trajectory.model_validate(traj(job_id, **over))


def test_enqueue_is_idempotent_and_rejects_a_changed_payload(make_store: Any) -> None:
    s = make_store()
    assert s.enqueue(specs(3)) == (["job-0", "job-1", "job-2"], 3, 0)
    assert s.enqueue(specs(3)) == (["job-0", "job-1", "job-2"], 0, 3)
    with pytest.raises(Conflict, match="job-1.*different payload"):
        s.enqueue([JobSpec.model_validate(job(1, policy_version=9))])
    assert s.metrics()["queued"] == 3


def test_leases_are_fifo_and_carry_the_job(make_store: Any, clock: FakeClock) -> None:
    s = make_store(lease_s=30)
    s.enqueue(specs(5))
    got = s.lease("w1", max_jobs=2)
    assert [g.job.id for g in got] == ["job-0", "job-1"]
    assert got[0].lease_expires == clock.now + 30
    assert got[0].attempt == 1
    assert got[0].job.sampling.temperature == 0.8 and got[0].job.sampling.max_tokens == 256
    assert got[0].job.policy_version == 3 and got[0].job.env.endpoint == "http://127.0.0.1:9000"
    assert [g.job.id for g in s.lease("w2", max_jobs=10)] == ["job-2", "job-3", "job-4"]
    assert s.lease("w3") == []
    assert s.metrics()["leased"] == 5


def test_expired_lease_is_requeued_then_fails_at_the_attempt_cap(make_store: Any, clock: FakeClock) -> None:
    s = make_store(lease_s=10, max_attempts=2)
    s.enqueue(specs(1))
    first = s.lease("w1")[0]
    clock.advance(9.9)
    assert s.lease("w2") == []  # still live
    clock.advance(0.2)
    second = s.lease("w2")[0]  # expired -> requeued -> leased again, lazily inside the lease call
    assert (second.job.id, second.attempt) == ("job-0", 2)
    assert second.lease_id != first.lease_id
    clock.advance(11)
    assert s.reap() == 1  # the background reaper's path
    view = s.get_job("job-0")
    assert view["state"] == "failed"
    assert "attempt 2/2" in view["failure_reason"] and "'w2'" in view["failure_reason"]
    m = s.metrics()
    assert (m["requeues"], m["expired_failures"], m["failed"]) == (1, 1, 1)
    items, _ = s.outcomes(0, 10)
    assert [(i["job_id"], i["state"]) for i in items] == [("job-0", "failed")]


def test_heartbeat_extends_a_live_lease_and_409s_a_lost_one(make_store: Any, clock: FakeClock) -> None:
    s = make_store(lease_s=10)
    s.enqueue(specs(1))
    a = s.lease("w1")[0]
    clock.advance(8)
    assert s.heartbeat("job-0", "w1", a.lease_id) == clock.now + 10
    clock.advance(8)  # 16 s after the lease, alive thanks to the heartbeat
    assert s.lease("w2") == []
    with pytest.raises(Conflict, match="another worker"):
        s.heartbeat("job-0", "w2", a.lease_id)
    clock.advance(3)
    with pytest.raises(Conflict, match="expired"):
        s.heartbeat("job-0", "w1", a.lease_id)
    b = s.lease("w2")[0]
    with pytest.raises(Conflict, match="lost: the job was re-leased"):
        s.heartbeat("job-0", "w1", a.lease_id)
    assert s.heartbeat("job-0", "w2", b.lease_id) > clock.now
    with pytest.raises(JobNotFound):
        s.heartbeat("nope", "w2", b.lease_id)


def test_submit_is_idempotent_by_job_id(make_store: Any) -> None:
    s = make_store()
    s.enqueue(specs(1))
    a = s.lease("w1")[0]
    assert s.submit("job-0", "w1", a.lease_id, T("job-0")) == (False, 1)
    assert s.submit("job-0", "w1", a.lease_id, T("job-0")) == (True, 1)
    with pytest.raises(Conflict, match="different trajectory"):
        s.submit("job-0", "w1", a.lease_id, T("job-0", reward=0.0))
    m = s.metrics()
    assert (m["done"], m["submitted"], m["duplicates"], m["conflicts"]) == (1, 1, 1, 1)
    items, cursor = s.outcomes(0, 10)
    assert len(items) == 1 and items[0]["trajectory"]["reward"] == 1.0 and cursor == 1
    with pytest.raises(Conflict, match="already done"):
        s.heartbeat("job-0", "w1", a.lease_id)


def test_stale_lease_submission_wins_if_first_and_the_new_holder_is_told(
    make_store: Any, clock: FakeClock
) -> None:
    """The documented rule: any lease granted for the job may submit; the first commit wins."""
    s = make_store(lease_s=10)
    s.enqueue(specs(1))
    old = s.lease("slow")[0]
    clock.advance(11)
    new = s.lease("fast")[0]
    assert s.submit("job-0", "slow", old.lease_id, T("job-0", reward=0.25)) == (False, 1)
    with pytest.raises(Conflict, match="already done"):
        s.heartbeat("job-0", "fast", new.lease_id)
    with pytest.raises(Conflict, match="different trajectory"):
        s.submit("job-0", "fast", new.lease_id, T("job-0", reward=0.75))
    items, _ = s.outcomes(0, 10)
    assert [i["trajectory"]["reward"] for i in items] == [0.25]
    assert s.metrics()["done"] == 1


def test_submit_needs_a_lease_granted_for_that_job(make_store: Any) -> None:
    s = make_store()
    s.enqueue(specs(2))
    a, b = s.lease("w1", max_jobs=2)
    with pytest.raises(Conflict, match="never granted"):
        s.submit("job-1", "w1", a.lease_id, T("job-1"))
    with pytest.raises(Conflict, match="never granted"):
        s.submit("job-0", "w1", "forged", T("job-0"))
    with pytest.raises(Conflict, match="another worker"):
        s.submit("job-0", "intruder", a.lease_id, T("job-0"))
    with pytest.raises(BadRequest, match="does not match"):
        s.submit("job-0", "w1", a.lease_id, T("job-1"))
    assert s.metrics()["done"] == 0


def test_fail_records_one_failure_or_requeues_when_retryable(make_store: Any) -> None:
    s = make_store(max_attempts=2)
    s.enqueue(specs(2))
    a, b = s.lease("w1", max_jobs=2)
    assert s.fail("job-0", "w1", a.lease_id, "env server down: connection refused") == ("failed", False)
    assert s.fail("job-0", "w1", a.lease_id, "env server down: connection refused") == ("failed", True)
    assert s.get_job("job-0")["failure_reason"] == "worker 'w1': env server down: connection refused"
    with pytest.raises(Conflict, match="already failed"):
        s.submit("job-0", "w1", a.lease_id, T("job-0"))
    assert s.fail("job-1", "w1", b.lease_id, "timeout", retryable=True) == ("queued", False)
    c = s.lease("w2")[0]
    assert (c.job.id, c.attempt) == ("job-1", 2)
    assert s.fail("job-1", "w2", c.lease_id, "timeout", retryable=True) == ("failed", False)
    assert "attempt cap" in s.get_job("job-1")["failure_reason"]
    items, _ = s.outcomes(0, 10, kind="failed")
    assert [i["job_id"] for i in items] == ["job-0", "job-1"]


def test_outcome_cursor_pages_in_commit_order(make_store: Any) -> None:
    s = make_store()
    s.enqueue(specs(5))
    leased = s.lease("w", max_jobs=5)
    for g in reversed(leased):
        s.submit(g.job.id, "w", g.lease_id, T(g.job.id))
    page1, cur = s.outcomes(0, 2)
    page2, cur = s.outcomes(cur, 2)
    page3, cur = s.outcomes(cur, 2)
    page4, cur2 = s.outcomes(cur, 2)
    ids = [i["job_id"] for i in page1 + page2 + page3]
    assert ids == ["job-4", "job-3", "job-2", "job-1", "job-0"]
    assert page4 == [] and cur2 == cur == 5


def test_outcomes_json_is_the_outcome_page_with_stored_trajectories_spliced_in(make_store: Any) -> None:
    import json

    from services.rollout_api.schemas import OutcomePage

    s = make_store(max_attempts=1)
    s.enqueue(specs(4))
    a, b, c, d = s.lease("w", max_jobs=4)
    s.submit("job-0", "w", a.lease_id, T("job-0"))
    s.fail("job-1", "w", b.lease_id, 'env said "no" \u00e9\u4e2d\n\ttab')
    s.submit("job-2", "w", c.lease_id, T("job-2"))
    for since, limit, kind in [
        (0, 10, "all"),
        (0, 1, "all"),
        (1, 10, "done"),
        (0, 10, "failed"),
        (9, 10, "all"),
    ]:
        items, cursor = s.outcomes(since, limit, kind)
        raw = s.outcomes_json(since, limit, kind)
        assert json.loads(raw) == {"items": items, "next_since": cursor}, (since, limit, kind)
        page = OutcomePage.model_validate_json(raw)
        assert [i.job_id for i in page.items] == [i["job_id"] for i in items]
    page = OutcomePage.model_validate_json(s.outcomes_json(0, 10))
    assert page.items[0].trajectory == T("job-0")
    assert page.items[1].trajectory is None and page.items[1].failure_reason.endswith(
        '"no" \u00e9\u4e2d\n\ttab'
    )


def test_lease_retry_with_the_same_request_id_returns_the_same_leases(make_store: Any) -> None:
    s = make_store()
    s.enqueue(specs(4))
    first = s.lease("w1", max_jobs=2, request_id="req-1")
    again = s.lease("w1", max_jobs=2, request_id="req-1")
    assert [(g.job.id, g.lease_id) for g in again] == [(g.job.id, g.lease_id) for g in first]
    assert s.metrics()["leased"] == 2
    assert [g.job.id for g in s.lease("w1", max_jobs=2, request_id="req-2")] == ["job-2", "job-3"]


def test_state_survives_reopening_the_store(make_store: Any) -> None:
    s = make_store()
    s.enqueue(specs(2))
    a = s.lease("w")[0]
    s.submit(a.job.id, "w", a.lease_id, T(a.job.id))
    s.close()
    s2 = make_store()
    assert s2.get_job("job-0")["state"] == "done" and s2.get_job("job-1")["state"] == "queued"
    assert s2.integrity_check() == "ok"


def test_bad_store_urls_fail_with_a_clear_message(tmp_path: Any) -> None:
    from services.rollout_api.settings import Settings
    from services.rollout_api.store import open_store

    with pytest.raises(ConfigError, match="durable"):
        open_store(Settings(db_url=":memory:"))
    with pytest.raises(ConfigError, match="unsupported"):
        open_store(Settings(db_url="mysql://x/y"))
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="cannot open the rollout store"):
        open_store(Settings(db_url=str(bad)))


def test_sqlite_store_runs_in_wal_mode(db_path: Any) -> None:
    import sqlite3

    from services.rollout_api.settings import Settings
    from services.rollout_api.store import open_store

    s = open_store(Settings(db_url=str(db_path)))
    s.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_full_disk_fails_the_write_cleanly_and_names_the_store(db_path: Any, clock: FakeClock) -> None:
    """SQLITE_FULL (here from max_page_count, as from a full disk): 503-class error naming the file, no damage."""
    from sqlalchemy import event

    from services.rollout_api.errors import StoreUnavailable
    from services.rollout_api.settings import Settings
    from services.rollout_api.store import open_store

    s = open_store(Settings(db_url=str(db_path)), clock=clock)
    s.enqueue(specs(40))
    leased = s.lease("w", max_jobs=40)
    with s.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
    event.listen(s.engine, "connect", lambda c, _r: c.execute(f"PRAGMA max_page_count={pages + 60}"))
    s.engine.dispose()  # new connections pick up the cap
    stored = []
    with pytest.raises(StoreUnavailable, match=rf"{db_path.name} unavailable: database or disk is full"):
        for g in leased:
            s.submit(g.job.id, "w", g.lease_id, T(g.job.id, n=4000))
            stored.append(g.job.id)
    assert 0 < len(stored) < 40
    failed_job = leased[len(stored)].job.id
    s.close()
    s2 = open_store(Settings(db_url=str(db_path)), clock=clock)  # space is back
    assert s2.integrity_check() == "ok"
    assert s2.get_job(failed_job)["state"] == "leased"  # the failed commit left nothing behind
    assert s2.metrics()["done"] == len(stored)
    g = leased[len(stored)]
    assert s2.submit(g.job.id, "w", g.lease_id, T(g.job.id, n=4000))[0] is False
