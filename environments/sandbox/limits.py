"""Resource limits for one sandboxed execution, and the result type."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ExecStatus = Literal["ok", "error", "timeout", "output_limit", "killed", "sandbox_error"]


class SandboxLimits(BaseModel):
    """Per-call caps. Defaults suit unit-test style code tasks on a 2-core machine."""

    model_config = ConfigDict(extra="forbid")

    wall_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="Wall clock; the whole jail is killed."
    )
    cpu_s: int = Field(default=10, ge=1, le=600, description="RLIMIT_CPU seconds.")
    memory_mb: int = Field(default=1024, ge=32, le=65536, description="RLIMIT_AS (virtual address space).")
    nproc: int = Field(default=64, ge=4, le=4096, description="RLIMIT_NPROC for the sandbox uid.")
    fsize_mb: int = Field(default=16, ge=1, le=4096, description="RLIMIT_FSIZE: largest file it may write.")
    nofile: int = Field(default=256, ge=16, le=65536, description="RLIMIT_NOFILE.")
    tmpfs_mb: int = Field(
        default=64, ge=1, le=4096, description="Size of the private /work and /tmp tmpfs each."
    )
    max_output_bytes: int = Field(default=1 << 20, ge=1024, description="Cap on stdout and on stderr each.")
    max_file_bytes: int = Field(default=1 << 20, ge=1, description="Cap on each returned file.")


class ExecResult(BaseModel):
    """What one sandboxed call produced."""

    status: ExecStatus
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_ms: float = 0.0
    truncated: bool = False
    files: dict[str, str] = Field(default_factory=dict)
    file_errors: dict[str, str] = Field(default_factory=dict)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"
