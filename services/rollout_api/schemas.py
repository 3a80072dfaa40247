"""Wire models of the rollout API (/v1). Every request model forbids unknown fields so typos fail loudly.

A job carries what K2-style RL needs per sample: the task, the environment endpoint, the sampling parameters with
the trainer's current temperature (temperature decay) and per-sample token budget (budget control, K2 §4), and the
policy version that should generate it (staleness accounting for partial rollouts).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from agentrl.schemas.trajectory import Trajectory

ID_PATTERN = r"^[A-Za-z0-9._:\-]+$"


def check_utf8(value: str) -> str:
    # json.loads accepts lone surrogates ("\ud800"); they can't be stored or sent back as UTF-8, so reject here.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"invalid unicode (a lone surrogate) at character {exc.start}") from exc
    return value


Text = Annotated[str, AfterValidator(check_utf8)]
# No control characters: worker ids end up in log lines, where a newline could forge an entry.
WorkerId = Annotated[Text, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
LeaseId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingParams(Strict):
    temperature: float = Field(ge=0.0, le=10.0, description="Sampling temperature (from the decay schedule).")
    max_tokens: int = Field(ge=1, le=10_000_000, description="Per-sample token budget (budget control).")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=-1, ge=-1)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list, max_length=64)


class EnvRef(Strict):
    endpoint: str = Field(min_length=1, max_length=2048, description="Base URL of the environment server.")
    name: str = Field(default="", max_length=256, description="Environment name, e.g. tool_world.")


class JobSpec(Strict):
    id: str | None = Field(default=None, min_length=1, max_length=128, pattern=ID_PATTERN)
    task: dict[str, Any] = Field(description="The task as the environment's reset() takes it.")
    env: EnvRef
    sampling: SamplingParams
    policy_version: int = Field(ge=0, le=2**63 - 1)  # a BIGINT column: larger overflowed into a 500
    group_id: str | None = Field(
        default=None, max_length=256, description="Shared by the K samples of a prompt."
    )
    task_type: str = Field(default="tool_use", max_length=64)
    max_attempts: int | None = Field(default=None, ge=1, le=100, description="Overrides the server default.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class EnqueueRequest(Strict):
    jobs: list[JobSpec] = Field(min_length=1)


class EnqueueResult(BaseModel):
    ids: list[str]
    created: int
    duplicates: int


class LeaseRequest(Strict):
    worker_id: WorkerId
    max_jobs: int = Field(default=1, ge=1)
    lease_s: float | None = Field(default=None, gt=0, description="Defaults to the server's lease_s.")
    request_id: Text | None = Field(
        default=None,
        max_length=128,
        description="Makes the call idempotent: a retry returns the same leases.",
    )


class LeasedJob(BaseModel):
    job: JobSpec
    lease_id: str
    lease_expires: float = Field(
        description="Unix time (server clock) the lease ends unless a heartbeat extends it."
    )
    lease_s: float = Field(
        description="Lease duration; heartbeat well within it (the client uses lease_s / 3)."
    )
    attempt: int


class LeaseResult(BaseModel):
    jobs: list[LeasedJob]


class HeartbeatRequest(Strict):
    worker_id: WorkerId
    lease_id: LeaseId


class HeartbeatResult(BaseModel):
    lease_expires: float


class SubmitRequest(Strict):
    worker_id: WorkerId
    lease_id: LeaseId
    trajectory: Trajectory


class SubmitResult(BaseModel):
    job_id: str
    duplicate: bool
    seq: int


class FailRequest(Strict):
    worker_id: WorkerId
    lease_id: LeaseId
    reason: Text = Field(min_length=1, max_length=10_000)
    retryable: bool = Field(
        default=False, description="Requeue if attempts remain instead of failing the job."
    )


class FailResult(BaseModel):
    job_id: str
    state: Literal["queued", "failed"]
    duplicate: bool


class JobView(BaseModel):
    id: str
    state: Literal["queued", "leased", "done", "failed"]
    job: JobSpec
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires: float | None
    failure_reason: str | None
    outcome_seq: int | None
    created_at: float
    updated_at: float


class JobList(BaseModel):
    jobs: list[JobView]


class Outcome(BaseModel):
    seq: int
    job_id: str
    state: Literal["done", "failed"]
    group_id: str | None
    policy_version: int
    trajectory: Trajectory | None = None
    failure_reason: str | None = None


class OutcomePage(BaseModel):
    items: list[Outcome]
    next_since: int = Field(description="Pass as `since` to get the next page; persist it to resume exactly.")


class Health(BaseModel):
    status: Literal["ok"]
    api_version: str
    store: str
