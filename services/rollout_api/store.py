"""The durable job/trajectory store: leases, heartbeats, exactly-once submission, requeue on expiry.

Exactly-once (architecture.md, "Invariants"): every job ends with exactly one stored trajectory or one recorded
failure. The database enforces it (trajectories.job_id is the primary key; a job's `outcome_seq` is set once),
and every state change is one transaction, so a crash at any point leaves either the old or the new state.

Rules (docs/rollout_api.md has the full table):
- A lease is *live* while the job is `leased` under that lease id and the clock is before its expiry.
- heartbeat and fail need a live lease; otherwise 409 (the worker should drop the job).
- submit accepts a trajectory from any lease ever granted for the job, and the first one to commit wins. A
  worker whose lease expired and whose job was re-leased can still finish it: its trajectory is as valid as the
  new holder's (same task, sampling and policy version), so discarding it would only waste work. The later
  submission then gets 200 `duplicate: true` if identical, else 409 and is discarded; the new holder's
  heartbeat gets 409 so it stops early.
- An expired lease is requeued (lazily inside every lease call, and by the app's background reaper); after
  `max_attempts` leases the job fails with a reason instead.

The clock is injected so tests can move time without sleeping.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from agentrl.schemas.trajectory import Trajectory
from services.rollout_api.errors import BadRequest, Conflict, JobNotFound, OutcomeConflict, StoreUnavailable
from services.rollout_api.reads import StoreReads
from services.rollout_api.schemas import JobSpec, LeasedJob
from services.rollout_api.settings import Settings, redact_url, sqlalchemy_url
from services.rollout_api.tables import counters, jobs, leases, open_engine, trajectories

_RETRY_PGCODES = {"40001", "40P01"}  # serialization failure, deadlock: the transaction is safe to rerun


def canonical_json(obj: Any, what: str) -> str:
    """Deterministic JSON (sorted keys), so identical submissions hash identically; rejects what JSON can't carry."""
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise BadRequest(f"{what} contains NaN or Infinity, which JSON cannot carry") from exc
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(
            f"{what} contains invalid unicode (a lone surrogate) near character {exc.start}"
        ) from exc
    return text


class Store(StoreReads):
    def __init__(self, engine: Engine, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.is_sqlite = engine.dialect.name == "sqlite"
        # Named in every store error (disk full, locked, unreachable), with any password redacted.
        self.where = engine.url.database if self.is_sqlite else redact_url(settings.db_url)

    # ---- transactions -------------------------------------------------------------------------------------

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                if not write:
                    conn = conn.execution_options(sqlite_begin="DEFERRED")
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise StoreUnavailable(f"rollout store {self.where} unavailable: {exc.orig}") from exc

    def _run(self, fn: Callable[[Connection], Any], write: bool = True) -> Any:
        """Run fn in one transaction; rerun it on Postgres deadlocks/serialization failures."""
        for attempt in range(5):
            try:
                with self._tx(write) as conn:
                    return fn(conn)
            except StoreUnavailable as exc:
                code = getattr(getattr(exc.__cause__, "orig", None), "sqlstate", None)
                if code not in _RETRY_PGCODES or attempt == 4:
                    raise
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    def _bump(self, conn: Connection, name: str, k: int = 1) -> None:
        if k:
            conn.execute(update(counters).where(counters.c.name == name).values(value=counters.c.value + k))

    def _next_seq(self, conn: Connection) -> int:
        # The row lock taken by this UPDATE is held to commit, so outcome seqs commit in increasing order.
        return conn.execute(
            update(counters)
            .where(counters.c.name == "outcome_seq")
            .values(value=counters.c.value + 1)
            .returning(counters.c.value)
        ).scalar_one()

    def _job_row(self, conn: Connection, job_id: str, lock: bool = False) -> Any:
        q = select(jobs).where(jobs.c.id == job_id)
        if lock and not self.is_sqlite:
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return row

    # ---- enqueue ------------------------------------------------------------------------------------------

    def enqueue(self, specs: list[JobSpec]) -> tuple[list[str], int, int]:
        """Add jobs; re-sending a job with the same id and payload is a no-op. Returns (ids, created, dups)."""
        if len(specs) > self.settings.max_batch:
            raise BadRequest(
                f"{len(specs)} jobs in one call; the limit is max_batch={self.settings.max_batch}"
            )
        now = self.clock()
        prepared: dict[str, tuple[str, JobSpec]] = {}
        ids: list[str] = []
        for spec in specs:
            job_id = spec.id or uuid.uuid4().hex
            spec = spec.model_copy(update={"id": job_id})
            payload = canonical_json(spec.model_dump(mode="json"), f"job {job_id!r}")
            if job_id in prepared and prepared[job_id][0] != payload:
                raise Conflict(f"job id {job_id!r} appears twice in this request with different payloads")
            prepared[job_id] = (payload, spec)
            ids.append(job_id)

        def tx(conn: Connection) -> tuple[list[str], int, int]:
            existing = dict(
                conn.execute(select(jobs.c.id, jobs.c.payload).where(jobs.c.id.in_(list(prepared)))).all()
            )
            fresh = [job_id for job_id in prepared if job_id not in existing]
            base = 0
            if fresh:  # reserve a block of FIFO positions; the counter row lock orders concurrent enqueues
                base = conn.execute(
                    update(counters)
                    .where(counters.c.name == "enqueued")
                    .values(value=counters.c.value + len(fresh))
                    .returning(counters.c.value)
                ).scalar_one() - len(fresh)
            rows = []
            for job_id, (payload, spec) in prepared.items():
                if job_id in existing:
                    if existing[job_id] != payload:
                        raise Conflict(f"job {job_id!r} already exists with a different payload")
                    continue
                rows.append(
                    {
                        "id": job_id,
                        "payload": payload,
                        "state": "queued",
                        "group_id": spec.group_id,
                        "policy_version": spec.policy_version,
                        "attempts": 0,
                        "max_attempts": spec.max_attempts or self.settings.max_attempts,
                        "fifo": base + len(rows) + 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            if rows:
                conn.execute(jobs.insert(), rows)
            return ids, len(rows), len(prepared) - len(rows)

        try:
            return self._run(tx)
        except IntegrityError as exc:  # a concurrent enqueue of the same id won the race
            raise Conflict(f"concurrent enqueue of the same job id: {exc.orig}") from exc

    # ---- leases -------------------------------------------------------------------------------------------

    def _reap(self, conn: Connection, now: float) -> int:
        q = select(
            jobs.c.id, jobs.c.attempts, jobs.c.max_attempts, jobs.c.lease_id, jobs.c.lease_owner
        ).where(jobs.c.state == "leased", jobs.c.lease_expires <= now)
        if not self.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        n = 0
        for r in conn.execute(q).all():
            cleared = {"lease_id": None, "lease_owner": None, "lease_expires": None, "updated_at": now}
            if r.attempts >= r.max_attempts:
                reason = (
                    f"lease expired on attempt {r.attempts}/{r.max_attempts} "
                    f"(last worker {r.lease_owner!r}); attempt cap reached"
                )
                values = {**cleared, "state": "failed", "failure_reason": reason}
                values["outcome_seq"] = self._next_seq(conn)
                counter = "expired_failures"
            else:
                values = {**cleared, "state": "queued"}
                counter = "requeues"
            res = conn.execute(
                update(jobs)
                .where(jobs.c.id == r.id, jobs.c.state == "leased", jobs.c.lease_id == r.lease_id)
                .values(**values)
            )
            if res.rowcount == 1:
                conn.execute(
                    update(leases).where(leases.c.id == r.lease_id).values(outcome="expired", ended_at=now)
                )
                self._bump(conn, counter)
                n += 1
        return n

    def reap(self) -> int:
        """Requeue (or fail, at the attempt cap) every job whose lease has expired. Returns how many."""
        return self._run(lambda conn: self._reap(conn, self.clock()))

    def lease(
        self, worker_id: str, max_jobs: int = 1, lease_s: float | None = None, request_id: str | None = None
    ) -> list[LeasedJob]:
        """Lease up to max_jobs queued jobs, oldest first. A repeated request_id returns the same leases."""
        duration = min(lease_s or self.settings.lease_s, self.settings.max_lease_s)
        max_jobs = min(max_jobs, self.settings.max_batch)

        def tx(conn: Connection) -> list[LeasedJob]:
            now = self.clock()
            if request_id:
                replay = conn.execute(
                    select(jobs, leases.c.id.label("granted_lease"))
                    .join(leases, leases.c.job_id == jobs.c.id)
                    .where(leases.c.request_id == request_id, leases.c.worker_id == worker_id)
                ).all()
                if replay:  # a retried call: hand back what it got, if still live
                    return [
                        _leased(r)
                        for r in replay
                        if r.state == "leased" and r.lease_id == r.granted_lease and now < r.lease_expires
                    ]
            self._reap(conn, now)
            q = (
                select(jobs.c.id, jobs.c.attempts)
                .where(jobs.c.state == "queued")
                .order_by(jobs.c.fifo)
                .limit(max_jobs)
            )
            if not self.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            granted: list[str] = []
            for r in conn.execute(q).all():
                lease_id = uuid.uuid4().hex
                res = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == r.id, jobs.c.state == "queued")  # compare-and-set: never lease twice
                    .values(
                        state="leased",
                        lease_id=lease_id,
                        lease_owner=worker_id,
                        lease_expires=now + duration,
                        lease_s=duration,
                        leased_at=now,
                        attempts=r.attempts + 1,
                        updated_at=now,
                    )
                )
                if res.rowcount != 1:
                    continue
                conn.execute(
                    leases.insert().values(
                        id=lease_id,
                        job_id=r.id,
                        worker_id=worker_id,
                        request_id=request_id,
                        attempt=r.attempts + 1,
                        granted_at=now,
                    )
                )
                granted.append(r.id)
            self._bump(conn, "leases_granted", len(granted))
            if not granted:
                return []
            rows = conn.execute(select(jobs).where(jobs.c.id.in_(granted)).order_by(jobs.c.fifo)).all()
            return [_leased(r) for r in rows]

        return self._run(tx)

    def _check_live(self, job: Any, worker_id: str, lease_id: str, now: float) -> None:
        if job.state == "done":
            raise Conflict(f"job {job.id!r} is already done; lease {lease_id} is over, drop the job")
        if job.state == "failed":
            raise Conflict(f"job {job.id!r} already failed ({job.failure_reason}); lease {lease_id} is over")
        if job.state == "queued":
            raise Conflict(f"lease {lease_id} on job {job.id!r} expired and the job was requeued")
        if job.lease_id != lease_id:
            raise Conflict(f"lease {lease_id} on job {job.id!r} was lost: the job was re-leased")
        if job.lease_owner != worker_id:
            raise Conflict(f"lease {lease_id} on job {job.id!r} belongs to another worker, not {worker_id!r}")
        if now >= job.lease_expires:
            raise Conflict(f"lease {lease_id} on job {job.id!r} expired at {job.lease_expires:.3f}")

    def heartbeat(self, job_id: str, worker_id: str, lease_id: str) -> float:
        """Extend a live lease by its lease_s; returns the new expiry. 409 if the lease is not live."""

        def tx(conn: Connection) -> float:
            now = self.clock()
            job = self._job_row(conn, job_id, lock=True)
            self._check_live(job, worker_id, lease_id, now)
            expires = now + job.lease_s
            conn.execute(
                update(jobs).where(jobs.c.id == job_id).values(lease_expires=expires, updated_at=now)
            )
            return expires

        return self._run(tx)

    # ---- outcomes -----------------------------------------------------------------------------------------

    def _granted_lease(self, conn: Connection, job_id: str, worker_id: str, lease_id: str) -> Any:
        lease = conn.execute(select(leases).where(leases.c.id == lease_id, leases.c.job_id == job_id)).first()
        if lease is None:
            raise Conflict(f"lease {lease_id} was never granted for job {job_id!r}")
        if lease.worker_id != worker_id:
            raise Conflict(f"lease {lease_id} was granted to another worker, not {worker_id!r}")
        return lease

    def submit(self, job_id: str, worker_id: str, lease_id: str, trajectory: Trajectory) -> tuple[bool, int]:
        """Store the job's trajectory. Returns (duplicate, seq). First commit wins; see the module docstring."""
        if trajectory.job_id is not None and trajectory.job_id != job_id:
            raise BadRequest(
                f"trajectory.job_id {trajectory.job_id!r} does not match the job {job_id!r} in the URL"
            )
        doc = trajectory.model_copy(update={"job_id": job_id}).model_dump(mode="json")
        text = canonical_json(doc, f"trajectory for job {job_id!r}")
        digest = hashlib.sha256(text.encode()).hexdigest()

        def tx(conn: Connection) -> tuple[bool, int]:
            now = self.clock()
            job = self._job_row(conn, job_id, lock=True)
            lease = self._granted_lease(conn, job_id, worker_id, lease_id)
            stored = conn.execute(
                select(trajectories.c.sha256, trajectories.c.seq, trajectories.c.lease_id).where(
                    trajectories.c.job_id == job_id
                )
            ).first()
            if stored is not None:
                if stored.sha256 == digest:
                    self._bump(conn, "duplicates")
                    return True, stored.seq
                raise OutcomeConflict(
                    f"job {job_id!r} already has a different trajectory (from lease {stored.lease_id}); "
                    "this submission was discarded"
                )
            if job.state == "failed":
                raise OutcomeConflict(
                    f"job {job_id!r} already failed ({job.failure_reason}); trajectory discarded"
                )
            seq = self._next_seq(conn)
            conn.execute(
                trajectories.insert().values(
                    job_id=job_id,
                    seq=seq,
                    trajectory=text,
                    sha256=digest,
                    lease_id=lease_id,
                    worker_id=worker_id,
                    lease_to_submit_s=max(0.0, now - lease.granted_at),
                    created_at=now,
                )
            )
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(state="done", outcome_seq=seq, lease_id=None, lease_expires=None, updated_at=now)
            )
            conn.execute(
                update(leases)
                .where(leases.c.job_id == job_id, leases.c.outcome.is_(None))
                .values(outcome="superseded", ended_at=now)
            )
            conn.execute(
                update(leases).where(leases.c.id == lease_id).values(outcome="submitted", ended_at=now)
            )
            self._bump(conn, "submitted")
            return False, seq

        try:
            try:
                return self._run(tx)
            except (
                IntegrityError
            ):  # Postgres: a concurrent submit for the same job committed first; answer again
                return self._run(tx)
        except OutcomeConflict:
            # Counted in its own transaction: the failed one rolled back, and the store itself stays unchanged.
            self._run(lambda conn: self._bump(conn, "conflicts"))
            raise

    def fail(
        self, job_id: str, worker_id: str, lease_id: str, reason: str, retryable: bool = False
    ) -> tuple[str, bool]:
        """Record that a live lease could not produce a trajectory. Returns (job state, duplicate)."""

        def tx(conn: Connection) -> tuple[str, bool]:
            now = self.clock()
            job = self._job_row(conn, job_id, lock=True)
            lease = self._granted_lease(conn, job_id, worker_id, lease_id)
            if lease.outcome in ("failed", "requeued"):  # a retried fail call
                return ("failed" if lease.outcome == "failed" else "queued"), True
            self._check_live(job, worker_id, lease_id, now)
            cleared = {"lease_id": None, "lease_owner": None, "lease_expires": None, "updated_at": now}
            if retryable and job.attempts < job.max_attempts:
                state, values = "queued", {**cleared, "state": "queued"}
                self._bump(conn, "requeues")
            else:
                cap = " (attempt cap reached)" if retryable else ""
                values = {
                    **cleared,
                    "state": "failed",
                    "failure_reason": f"worker {worker_id!r}: {reason}{cap}",
                    "outcome_seq": self._next_seq(conn),
                }
                state = "failed"
                self._bump(conn, "failed_by_worker")
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
            outcome = "requeued" if state == "queued" else "failed"
            conn.execute(update(leases).where(leases.c.id == lease_id).values(outcome=outcome, ended_at=now))
            return state, False

        return self._run(tx)

    def close(self) -> None:
        self.engine.dispose()


def _leased(r: Any) -> LeasedJob:
    return LeasedJob(
        job=JobSpec.model_validate_json(r.payload),
        lease_id=r.lease_id,
        lease_expires=r.lease_expires,
        lease_s=r.lease_s,
        attempt=r.attempts,
    )


def open_store(settings: Settings, clock: Callable[[], float] = time.time) -> Store:
    """Open the store named by settings.db_url (creating tables on first use)."""
    return Store(open_engine(sqlalchemy_url(settings.db_url), settings.sqlite_synchronous), settings, clock)
