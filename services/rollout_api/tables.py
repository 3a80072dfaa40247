"""SQL schema of the trajectory store and the engine that opens it (SQLite in WAL mode, or Postgres).

Tables:
- `jobs`: one row per rollout job; `state` is queued -> leased -> done | failed (leased -> queued on expiry).
- `leases`: one row per lease ever granted, so a submission can prove it held a lease and retries are idempotent.
- `trajectories`: at most one per job (`job_id` UNIQUE) - the database itself enforces exactly-once.
- `counters`: durable metrics and the outcome cursor (`outcome_seq`). Outcome sequence numbers come from a counter
  row updated inside the finishing transaction, not from an autoincrement: on Postgres a sequence value can commit
  after a larger one, and a reader polling `seq > cursor` would skip it forever. The counter row lock orders
  commits, so the cursor never skips.

SQLite: WAL journal (readers never block the writer), `synchronous=FULL` by default (a commit survives power loss),
and every write transaction starts with BEGIN IMMEDIATE, taking the write lock up front so two leases can't
interleave their read-then-update. Postgres: row locks (`FOR UPDATE SKIP LOCKED`) play that role.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
)

from agentrl.errors import ConfigError

SCHEMA_VERSION = 1

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("payload", Text, nullable=False),  # the JobSpec as JSON
    Column("state", String(16), nullable=False),  # queued | leased | done | failed
    Column("group_id", String(256), nullable=True),
    Column("policy_version", BigInteger, nullable=False, default=0),
    Column("lease_id", String(64), nullable=True),  # the current lease while state == leased
    Column("lease_owner", String(256), nullable=True),
    Column("lease_expires", Float, nullable=True),
    Column("lease_s", Float, nullable=True),  # how far a heartbeat extends this lease
    Column("leased_at", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("failure_reason", Text, nullable=True),
    Column("outcome_seq", BigInteger, nullable=True, unique=True),  # set when the job reaches done/failed
    Column(
        "fifo", BigInteger, nullable=False
    ),  # enqueue order (from the `enqueued` counter): leases go oldest first
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_jobs_state_fifo", "state", "fifo"),
    Index("ix_jobs_group", "group_id"),
)

leases = Table(
    "leases",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("job_id", String(128), ForeignKey("jobs.id"), nullable=False, index=True),
    Column("worker_id", String(256), nullable=False),
    Column("request_id", String(128), nullable=True, index=True),
    Column("attempt", Integer, nullable=False),
    Column("granted_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    # None while open; then submitted | failed | requeued (by the worker) | expired | superseded (another lease won)
    Column("outcome", String(16), nullable=True),
)

trajectories = Table(
    "trajectories",
    metadata,
    Column("job_id", String(128), ForeignKey("jobs.id"), primary_key=True),  # UNIQUE: exactly one per job
    Column("seq", BigInteger, nullable=False, unique=True),  # = jobs.outcome_seq, the collection cursor
    Column("trajectory", Text, nullable=False),  # agentrl.schemas.Trajectory as JSON
    Column("sha256", String(64), nullable=False),  # of the canonical JSON: identifies identical resubmissions
    Column("lease_id", String(64), nullable=False),
    Column("worker_id", String(256), nullable=False),
    Column("lease_to_submit_s", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False, default=0),
)

COUNTER_NAMES = (
    "schema_version",
    "outcome_seq",
    "enqueued",
    "leases_granted",
    "requeues",
    "expired_failures",
    "submitted",
    "duplicates",
    "conflicts",
    "failed_by_worker",
)


def _sqlite_pragmas(synchronous: str) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's begin event below (pysqlite's own BEGIN is DEFERRED).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=30000")  # wait for the write lock instead of failing under load
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


def _sqlite_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def open_engine(url: str, synchronous: str = "FULL") -> Engine:
    """Open (and create if needed) the store at a SQLAlchemy URL; checks the schema version."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30.0})
        event.listen(engine, "connect", _sqlite_pragmas(synchronous))
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_timeout=30)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            have = {r.name for r in conn.execute(select(counters.c.name))}
            for name in COUNTER_NAMES:
                if name not in have:
                    value = SCHEMA_VERSION if name == "schema_version" else 0
                    conn.execute(counters.insert().values(name=name, value=value))
            version = conn.execute(
                select(counters.c.value).where(counters.c.name == "schema_version")
            ).scalar_one()
    except ConfigError:
        raise
    except Exception as exc:
        engine.dispose()
        raise ConfigError(f"cannot open the rollout store: {type(exc).__name__}: {exc}") from exc
    if version != SCHEMA_VERSION:
        engine.dispose()
        raise ConfigError(f"rollout store has schema version {version}, this build expects {SCHEMA_VERSION}")
    return engine
