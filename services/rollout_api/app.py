"""FastAPI app of the rollout API: workers lease jobs and submit trajectories, the trainer enqueues and collects.

All routes live under `/v1` and need the bearer token when one is configured; `/health` is open. The OpenAPI
document is `/v1/openapi.json` (its `info.version` is the wire version, services.rollout_api.settings.API_VERSION).
Handlers are plain `def`s: the store is synchronous (one short transaction per call) and FastAPI runs them in its
thread pool. Nothing here logs request headers, so the token never reaches a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from agentrl.body_limit import BodyLimitMiddleware
from agentrl.schemas.trajectory import Trajectory
from services.rollout_api.errors import BadRequest, StoreError
from services.rollout_api.limits import NonFiniteJSONGuard
from services.rollout_api.metrics import render_prometheus
from services.rollout_api.schemas import (
    ID_PATTERN,
    EnqueueRequest,
    EnqueueResult,
    FailRequest,
    FailResult,
    Health,
    HeartbeatRequest,
    HeartbeatResult,
    JobList,
    JobView,
    LeaseRequest,
    LeaseResult,
    OutcomePage,
    SubmitRequest,
    SubmitResult,
    check_utf8,
)
from services.rollout_api.settings import API_VERSION, Settings, resolve_token
from services.rollout_api.store import Store, open_store

log = logging.getLogger("agentrl.rollout_api")
JobId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]
_bearer = HTTPBearer(auto_error=False)


class _Unauthorized(Exception):
    pass


def _auth_dependency(settings: Settings) -> Callable[..., None]:
    expected = settings.token.get_secret_value().encode() if settings.auth_enabled and settings.token else b""

    def check(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if not expected:
            return
        # compare_digest: constant time, so the token can't be guessed byte by byte from response timing.
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), expected):
            raise _Unauthorized()

    return check


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(_Unauthorized)
    async def unauthorized(_req: Request, _exc: _Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"detail": "missing or invalid bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(StoreError)
    async def store_error(_req: Request, exc: StoreError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("store error: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        # Drop the echoed `input`: it can be megabytes (a whole trajectory) and is useless to the sender.
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()[:50]]
        return JSONResponse(
            {"detail": jsonable_encoder(errors), "error": _validation_message(exc)}, status_code=422
        )


def _routes(store: Store, settings: Settings) -> APIRouter:
    r = APIRouter(prefix="/v1", dependencies=[Depends(_auth_dependency(settings))])

    @r.post("/jobs", response_model=EnqueueResult, tags=["trainer"])
    def enqueue(body: EnqueueRequest) -> EnqueueResult:
        """Enqueue one or many jobs. Re-sending a job with the same id and payload is a no-op (idempotent)."""
        ids, created, dups = store.enqueue(body.jobs)
        return EnqueueResult(ids=ids, created=created, duplicates=dups)

    @r.post("/jobs/lease", response_model=LeaseResult, tags=["worker"])
    def lease(body: LeaseRequest) -> LeaseResult:
        """Lease up to max_jobs queued jobs (oldest first). Requeues expired leases first."""
        got = store.lease(body.worker_id, body.max_jobs, body.lease_s, body.request_id)
        if got:
            log.info("leased %d job(s) to %s", len(got), body.worker_id)
        return LeaseResult(jobs=got)

    @r.post("/jobs/{job_id}/heartbeat", response_model=HeartbeatResult, tags=["worker"])
    def heartbeat(job_id: JobId, body: HeartbeatRequest) -> HeartbeatResult:
        """Extend a live lease by its duration. 409 means the lease is lost: stop working on the job."""
        return HeartbeatResult(lease_expires=store.heartbeat(job_id, body.worker_id, body.lease_id))

    @r.post("/jobs/{job_id}/trajectory", response_model=SubmitResult, tags=["worker"])
    def submit(job_id: JobId, body: SubmitRequest) -> SubmitResult:
        """Submit the job's trajectory. Idempotent: an identical resubmission returns `duplicate: true`."""
        duplicate, seq = store.submit(job_id, body.worker_id, body.lease_id, body.trajectory)
        log.info(
            "trajectory for job %s from %s%s", job_id, body.worker_id, " (duplicate)" if duplicate else ""
        )
        return SubmitResult(job_id=job_id, duplicate=duplicate, seq=seq)

    @r.post("/jobs/{job_id}/fail", response_model=FailResult, tags=["worker"])
    def fail(job_id: JobId, body: FailRequest) -> FailResult:
        """Give up on a leased job with a reason; `retryable` requeues it while attempts remain."""
        state, duplicate = store.fail(job_id, body.worker_id, body.lease_id, body.reason, body.retryable)
        log.info("job %s %s by %s: %s", job_id, state, body.worker_id, body.reason[:200])
        return FailResult(job_id=job_id, state=state, duplicate=duplicate)  # type: ignore[arg-type]

    @r.get("/jobs/{job_id}", response_model=JobView, tags=["trainer"])
    def get_job(job_id: JobId) -> Any:
        return store.get_job(job_id)

    @r.get("/jobs/{job_id}/trajectory", response_model=Trajectory, tags=["trainer"])
    def get_trajectory(job_id: JobId) -> Any:
        """The job's stored trajectory; 404 until there is one. Workers resuming a partial rollout read it here."""
        return store.get_trajectory(job_id)

    @r.get("/jobs", response_model=JobList, tags=["trainer"])
    def list_jobs(
        state: Literal["queued", "leased", "done", "failed"] | None = None,
        group_id: Annotated[str | None, Query(max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        if group_id is not None:
            try:
                check_utf8(group_id)
            except ValueError as exc:
                raise BadRequest(f"query group_id: {exc}") from exc
        return {"jobs": store.list_jobs(state, group_id, limit)}

    @r.get("/trajectories", response_model=OutcomePage, tags=["trainer"])
    def collect(
        since: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        kind: Literal["all", "done", "failed"] = "all",
    ) -> Any:
        """Finished jobs after cursor `since`, in commit order: trajectories (state done) and failures."""
        # Stored trajectory JSON is passed through unparsed (reads.py, outcomes_json): bounded memory per page.
        return Response(store.outcomes_json(since, limit, kind), media_type="application/json")

    @r.get("/metrics", tags=["ops"], response_model=None)
    def metrics(format: Literal["json", "prometheus"] = "json") -> Any:
        """Job counts by state, requeues, duplicates, conflicts, p50/p90 lease-to-submit seconds."""
        m = store.metrics()
        return PlainTextResponse(render_prometheus(m)) if format == "prometheus" else m

    @r.get("/openapi.json", include_in_schema=False)
    def openapi_doc(request: Request) -> Any:
        return request.app.openapi()

    return r


def create_app(
    db_url: str,
    token: str | None = None,
    lease_s: float = 60.0,
    *,
    max_attempts: int = 3,
    reap_interval_s: float = 5.0,
    max_body_bytes: int = 64 * 2**20,
    sqlite_synchronous: str = "FULL",
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the app on the store at db_url. token None -> $AGENTRL_API_TOKEN; "" disables auth."""
    settings = Settings(
        db_url=db_url,
        token=resolve_token(token),
        lease_s=lease_s,
        max_lease_s=max(3600.0, lease_s),
        max_attempts=max_attempts,
        reap_interval_s=reap_interval_s,
        max_body_bytes=max_body_bytes,
        sqlite_synchronous=sqlite_synchronous,
    )
    store = open_store(settings, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(_reap_forever(store, settings.reap_interval_s))
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            store.close()

    app = FastAPI(
        title="agentrl rollout API",
        version=API_VERSION,
        summary="Lease rollout jobs, submit trajectories exactly once, collect them for training.",
        openapi_url=None,  # served at /v1/openapi.json behind auth instead
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.settings = settings
    app.add_middleware(NonFiniteJSONGuard)
    # Added last, so outermost: an oversized body is refused before the guard or FastAPI buffers it.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        error_key="detail",
        setting="--max-body-bytes (create_app(max_body_bytes=...))",
    )
    _install_handlers(app)
    app.include_router(_routes(store, settings))

    @app.get("/health", response_model=Health, tags=["ops"])
    def health() -> Health:
        """Open (no token). 200 when the store answers; 503 otherwise. Names the backend, not the URL."""
        store.ping()
        return Health(status="ok", api_version=API_VERSION, store=store.engine.dialect.name)

    return app


async def _reap_forever(store: Store, interval_s: float) -> None:
    if interval_s <= 0:
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            n = await run_in_threadpool(store.reap)
            if n:
                log.info("requeued or failed %d expired lease(s)", n)
        except StoreError as exc:  # keep reaping; the next lease call also reaps lazily
            log.warning("reaper: %s", exc)
