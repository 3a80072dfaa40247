"""Read side of the store: job views, the outcome cursor the trainer collects from, metrics, integrity check.

Reads run in DEFERRED transactions on SQLite, so in WAL mode they never wait for or block the writer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from services.rollout_api.errors import JobNotFound
from services.rollout_api.tables import counters, jobs, trajectories


class StoreReads:
    engine: Engine
    is_sqlite: bool
    _run: Callable[..., Any]
    _job_row: Callable[..., Any]

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._run(lambda conn: _job_view(self._job_row(conn, job_id)), write=False)

    def get_trajectory(self, job_id: str) -> dict[str, Any]:
        """The stored trajectory of a job (e.g. a `partial` one that the next iteration resumes)."""

        def tx(conn: Connection) -> dict[str, Any]:
            self._job_row(conn, job_id)
            text = conn.execute(
                select(trajectories.c.trajectory).where(trajectories.c.job_id == job_id)
            ).scalar_one_or_none()
            if text is None:
                raise JobNotFound(f"job {job_id!r} has no trajectory (yet)")
            return json.loads(text)

        return self._run(tx, write=False)

    def list_jobs(self, state: str | None, group_id: str | None, limit: int) -> list[dict[str, Any]]:
        q = select(jobs).order_by(jobs.c.fifo).limit(limit)
        if state:
            q = q.where(jobs.c.state == state)
        if group_id:
            q = q.where(jobs.c.group_id == group_id)
        return self._run(lambda conn: [_job_view(r) for r in conn.execute(q).all()], write=False)

    def _outcome_rows(self, since: int, limit: int, kind: str) -> list[Any]:
        q = (
            select(
                jobs.c.id,
                jobs.c.state,
                jobs.c.group_id,
                jobs.c.policy_version,
                jobs.c.failure_reason,
                jobs.c.outcome_seq,
                trajectories.c.trajectory,
            )
            .select_from(jobs.outerjoin(trajectories, trajectories.c.job_id == jobs.c.id))
            .where(jobs.c.outcome_seq > since)
            .order_by(jobs.c.outcome_seq)
            .limit(limit)
        )
        if kind != "all":
            q = q.where(jobs.c.state == kind)
        return self._run(lambda conn: conn.execute(q).all(), write=False)

    def outcomes(self, since: int, limit: int, kind: str = "all") -> tuple[list[dict[str, Any]], int]:
        """Finished jobs with outcome seq > since, in commit order. Returns (items, next cursor)."""
        rows = self._outcome_rows(since, limit, kind)
        items = [
            {**_outcome_head(r), "trajectory": json.loads(r.trajectory) if r.trajectory is not None else None}
            for r in rows
        ]
        return items, (rows[-1].outcome_seq if rows else since)

    def outcomes_json(self, since: int, limit: int, kind: str = "all") -> bytes:
        """The same page as `outcomes`, as the JSON of an `OutcomePage`, with each stored trajectory text spliced
        in as it is (it was validated and canonicalised on submit). Parsing 1000 trajectories into Python
        objects and serialising them again took ~100 MiB of short-lived objects per page, and the server's RSS
        kept the high-water mark (docs/reliability.md, "Rollout API memory"); this costs about the page's size.
        """
        rows = self._outcome_rows(since, limit, kind)
        parts = [
            json.dumps(_outcome_head(r), ensure_ascii=False)[:-1]
            + ',"trajectory":'
            + (r.trajectory if r.trajectory is not None else "null")
            + "}"
            for r in rows
        ]
        next_since = rows[-1].outcome_seq if rows else since
        return ('{"items":[' + ",".join(parts) + '],"next_since":' + str(int(next_since)) + "}").encode()

    def metrics(self) -> dict[str, Any]:
        def tx(conn: Connection) -> dict[str, Any]:
            states = dict(conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all())
            ctr = dict(conn.execute(select(counters.c.name, counters.c.value)).all())
            lat = conn.execute(
                select(trajectories.c.lease_to_submit_s).order_by(trajectories.c.seq.desc()).limit(1000)
            ).scalars()
            return {"states": states, "counters": ctr, "lease_to_submit": sorted(lat)}

        raw = self._run(tx, write=False)
        lat = raw["lease_to_submit"]
        out: dict[str, Any] = {
            s: int(raw["states"].get(s, 0)) for s in ("queued", "leased", "done", "failed")
        }
        c = raw["counters"]
        for name in ("enqueued", "leases_granted", "requeues", "expired_failures", "submitted", "duplicates"):
            out[name] = int(c.get(name, 0))
        out["conflicts"] = int(c.get("conflicts", 0))
        out["worker_failures"] = int(c.get("failed_by_worker", 0))
        out["lease_to_submit_p50_s"] = _quantile(lat, 0.5)
        out["lease_to_submit_p90_s"] = _quantile(lat, 0.9)
        return out

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query."""
        self._run(lambda conn: conn.exec_driver_sql("SELECT 1").scalar_one(), write=False)

    def integrity_check(self) -> str:
        """SQLite's PRAGMA integrity_check ('ok' when intact); Postgres has no equivalent and returns 'ok'."""
        if not self.is_sqlite:
            return "ok"
        with self.engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar_one())


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _outcome_head(r: Any) -> dict[str, Any]:
    return {
        "seq": r.outcome_seq,
        "job_id": r.id,
        "state": r.state,
        "group_id": r.group_id,
        "policy_version": r.policy_version,
        "failure_reason": r.failure_reason,
    }


def _job_view(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "state": r.state,
        "job": json.loads(r.payload),
        "attempts": r.attempts,
        "max_attempts": r.max_attempts,
        "lease_owner": r.lease_owner,
        "lease_expires": r.lease_expires,
        "failure_reason": r.failure_reason,
        "outcome_seq": r.outcome_seq,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
    }
