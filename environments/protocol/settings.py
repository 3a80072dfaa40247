"""Server settings for environment servers (explicit object; `from_env` reads AGENTRL_ENV_* variables)."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field


class ServerSettings(BaseModel):
    """Limits and security of one environment server."""

    model_config = ConfigDict(extra="forbid")

    token: str | None = Field(
        default=None, description="Bearer token; when set every route but /health needs it."
    )
    max_sessions: int = Field(
        default=1024, ge=1, description="Cap on concurrently open sessions (429 beyond)."
    )
    idle_timeout_s: float = Field(default=600.0, gt=0, description="Sessions idle this long are closed.")
    mcp: bool = Field(default=True, description="Serve the tool registry over MCP (streamable HTTP) at /mcp.")
    max_body_bytes: int = Field(
        default=16 * 2**20,
        gt=0,
        description="Request bodies over this many bytes get 413 before they are read (agentrl/body_limit.py).",
    )
    blocking: bool | None = Field(
        default=None, description="Run env methods in worker threads; None: use the env class's `blocking`."
    )

    @classmethod
    def from_env(cls, **overrides: object) -> ServerSettings:
        """Defaults from AGENTRL_ENV_TOKEN, _MAX_SESSIONS, _IDLE_TIMEOUT_S and _MAX_BODY_BYTES."""
        values: dict[str, object] = {}
        if os.environ.get("AGENTRL_ENV_TOKEN"):
            values["token"] = os.environ["AGENTRL_ENV_TOKEN"]
        if os.environ.get("AGENTRL_ENV_MAX_SESSIONS"):
            values["max_sessions"] = int(os.environ["AGENTRL_ENV_MAX_SESSIONS"])
        if os.environ.get("AGENTRL_ENV_IDLE_TIMEOUT_S"):
            values["idle_timeout_s"] = float(os.environ["AGENTRL_ENV_IDLE_TIMEOUT_S"])
        if os.environ.get("AGENTRL_ENV_MAX_BODY_BYTES"):
            values["max_body_bytes"] = int(os.environ["AGENTRL_ENV_MAX_BODY_BYTES"])
        values.update(overrides)
        return cls(**values)
