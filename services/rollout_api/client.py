"""Torch-free HTTP client of the rollout API for workers (lease/heartbeat/submit/fail) and the trainer
(enqueue/collect).

Every call has a timeout and is retried with exponential backoff and jitter on transport errors, 429 and 5xx.
Retrying is safe because every write is idempotent: enqueue sends client-chosen job ids, lease sends a request id
that the server uses to hand back the same leases, submit is idempotent by job id, fail by lease id. When the
retries run out the call raises APIUnavailable naming the URL, the attempts and the last error - never a hang.

`LeaseKeeper` heartbeats a lease from a background thread and flags `lost` on 409, so a worker can stop a job
that someone else now owns.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import httpx

from agentrl.errors import AgentRLError
from agentrl.schemas.trajectory import Trajectory
from services.rollout_api.schemas import (
    EnqueueResult,
    FailResult,
    JobSpec,
    LeasedJob,
    OutcomePage,
    SubmitResult,
)

_RETRY_STATUS = {429, 500, 502, 503, 504}


class RolloutAPIError(AgentRLError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class APIUnavailable(RolloutAPIError):
    """The API did not answer successfully within the retry budget."""


class Unauthorized(RolloutAPIError):
    """401: the token is missing or wrong."""


class LeaseLost(RolloutAPIError):
    """409: the lease is no longer live (expired, re-leased, or the job finished). Drop the job."""


class SubmissionRejected(RolloutAPIError):
    """409 on submit: the job already has a different trajectory or a recorded failure; discard this one."""


class RolloutClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        worker_id: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 5,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:12]}"
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> RolloutClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:  # never show the token
        return f"RolloutClient({self.base_url!r}, worker_id={self.worker_id!r})"

    # ---- transport ------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        last = ""
        start = time.monotonic()
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                time.sleep(delay * (0.5 + random.random() / 2))
            try:
                resp = self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status_code in _RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {_detail(resp)}"
                continue
            if resp.status_code == 401:
                raise Unauthorized(f"{method} {path}: 401 missing or invalid bearer token", 401)
            if resp.status_code >= 400:
                raise RolloutAPIError(
                    f"{method} {path}: HTTP {resp.status_code}: {_detail(resp)}", resp.status_code
                )
            return (
                resp.json()
                if resp.headers.get("content-type", "").startswith("application/json")
                else resp.text
            )
        raise APIUnavailable(
            f"rollout API at {self.base_url} failed {method} {path} after {self.retries + 1} attempts "
            f"over {time.monotonic() - start:.1f}s; last error: {last}"
        )

    # ---- trainer --------------------------------------------------------------------------------------------

    def enqueue(self, jobs: list[JobSpec | dict[str, Any]]) -> EnqueueResult:
        """Enqueue jobs. Ids are chosen here when missing so that a retried call cannot enqueue twice."""
        specs = [j if isinstance(j, JobSpec) else JobSpec.model_validate(j) for j in jobs]
        specs = [s if s.id else s.model_copy(update={"id": uuid.uuid4().hex}) for s in specs]
        body = {"jobs": [s.model_dump(mode="json") for s in specs]}
        return EnqueueResult.model_validate(self._call("POST", "/v1/jobs", json=body))

    def collect(self, since: int = 0, limit: int = 100, kind: str = "all") -> OutcomePage:
        """Finished jobs after cursor `since` (trajectories and failures); persist `next_since` to resume."""
        params = {"since": since, "limit": limit, "kind": kind}
        return OutcomePage.model_validate(self._call("GET", "/v1/trajectories", params=params))

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def get_trajectory(self, job_id: str) -> Trajectory:
        """The job's stored trajectory (to resume a partial rollout); RolloutAPIError 404 if none."""
        return Trajectory.model_validate(self._call("GET", f"/v1/jobs/{job_id}/trajectory"))

    def metrics(self) -> dict[str, Any]:
        return self._call("GET", "/v1/metrics")

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    # ---- worker ---------------------------------------------------------------------------------------------

    def lease(self, max_jobs: int = 1, lease_s: float | None = None) -> list[LeasedJob]:
        body = {"worker_id": self.worker_id, "max_jobs": max_jobs, "request_id": uuid.uuid4().hex}
        if lease_s is not None:
            body["lease_s"] = lease_s
        return [LeasedJob.model_validate(j) for j in self._call("POST", "/v1/jobs/lease", json=body)["jobs"]]

    def heartbeat(self, job_id: str, lease_id: str) -> float:
        """Extend the lease; returns the new expiry. Raises LeaseLost when the lease is gone."""
        body = {"worker_id": self.worker_id, "lease_id": lease_id}
        try:
            return float(self._call("POST", f"/v1/jobs/{job_id}/heartbeat", json=body)["lease_expires"])
        except RolloutAPIError as exc:
            if exc.status == 409:
                raise LeaseLost(str(exc), 409) from exc
            raise

    def submit(self, job_id: str, lease_id: str, trajectory: Trajectory | dict[str, Any]) -> SubmitResult:
        """Submit the trajectory (idempotent). Raises SubmissionRejected if the job already has another outcome."""
        traj = trajectory if isinstance(trajectory, Trajectory) else Trajectory.model_validate(trajectory)
        body = {"worker_id": self.worker_id, "lease_id": lease_id, "trajectory": traj.model_dump(mode="json")}
        try:
            return SubmitResult.model_validate(self._call("POST", f"/v1/jobs/{job_id}/trajectory", json=body))
        except RolloutAPIError as exc:
            if exc.status == 409:
                raise SubmissionRejected(str(exc), 409) from exc
            raise

    def fail(self, job_id: str, lease_id: str, reason: str, retryable: bool = False) -> FailResult:
        body = {"worker_id": self.worker_id, "lease_id": lease_id, "reason": reason, "retryable": retryable}
        try:
            return FailResult.model_validate(self._call("POST", f"/v1/jobs/{job_id}/fail", json=body))
        except RolloutAPIError as exc:
            if exc.status == 409:
                raise LeaseLost(str(exc), 409) from exc
            raise

    def keep_alive(self, leased: LeasedJob, interval_s: float | None = None) -> LeaseKeeper:
        """A context manager that heartbeats `leased` in the background until exit."""
        if interval_s is None:
            interval_s = max(
                0.05, leased.lease_s / 3
            )  # from the duration, not the expiry: clocks may disagree
        return LeaseKeeper(self, leased.job.id or "", leased.lease_id, interval_s)


class LeaseKeeper:
    """Heartbeats one lease every interval_s from a daemon thread; `lost` is set once the lease is gone."""

    def __init__(self, client: RolloutClient, job_id: str, lease_id: str, interval_s: float) -> None:
        self.client, self.job_id, self.lease_id, self.interval_s = client, job_id, lease_id, interval_s
        self.lost = threading.Event()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)  # daemon thread: a heartbeat stuck in retries can't block the worker

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.client.heartbeat(self.job_id, self.lease_id)
            except LeaseLost as exc:
                self.error = str(exc)
                self.lost.set()
                return
            except Exception as exc:  # transient (already retried inside) or a closed client: keep the reason
                self.error = f"{type(exc).__name__}: {exc}"


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body)[:2000]
    return str(body)[:500]
