"""Configuration of the rollout API: store URL, bearer token, lease timing and limits.

The token comes from the argument or, when that is None, from the AGENTRL_API_TOKEN environment variable. It is
held as a pydantic SecretStr so that reprs and logs show `**********`, never the token.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from agentrl.errors import ConfigError

TOKEN_ENV = "AGENTRL_API_TOKEN"
API_VERSION = "1.0.0"  # semver of the /v1 wire format; bumped on any change to the routes or schemas


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    db_url: str = Field(description="A SQLite path, sqlite:///path, or postgresql://user:pw@host/db.")
    token: SecretStr | None = Field(default=None, description="Bearer token; None or empty disables auth.")
    lease_s: float = Field(default=60.0, gt=0, description="Default lease duration; heartbeats extend by it.")
    max_lease_s: float = Field(
        default=3600.0, gt=0, description="Upper bound on a lease a worker may ask for."
    )
    max_attempts: int = Field(default=3, ge=1, description="Leases per job before an expiry marks it failed.")
    reap_interval_s: float = Field(
        default=5.0, ge=0, description="Background requeue of expired leases; 0 = only lazily on lease calls."
    )
    max_body_bytes: int = Field(default=64 * 2**20, gt=0, description="Larger requests get 413.")
    max_batch: int = Field(default=1024, ge=1, description="Most jobs per enqueue or lease call.")
    sqlite_synchronous: str = Field(
        default="FULL",
        pattern="^(FULL|NORMAL)$",
        description="FULL survives power loss, NORMAL only crashes.",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.lease_s > self.max_lease_s:
            raise ValueError(f"lease_s ({self.lease_s}) exceeds max_lease_s ({self.max_lease_s})")
        return self

    @property
    def auth_enabled(self) -> bool:
        return self.token is not None and self.token.get_secret_value() != ""


def resolve_token(token: str | None) -> SecretStr | None:
    """The explicit token wins; None falls back to $AGENTRL_API_TOKEN; an empty string disables auth."""
    if token is None:
        token = os.environ.get(TOKEN_ENV)
    return None if not token else SecretStr(token)


def sqlalchemy_url(db_url: str) -> str:
    """Map the user's store URL to a SQLAlchemy URL (psycopg 3 for Postgres, pysqlite for files)."""
    if not db_url or not db_url.strip():
        raise ConfigError("rollout store URL is empty: pass a SQLite path or a postgresql:// URL")
    if db_url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db_url.split("://", 1)[1]
    if db_url.startswith("postgresql+"):
        return db_url
    path = db_url[len("sqlite:///") :] if db_url.startswith("sqlite:///") else db_url
    if "://" in path:
        raise ConfigError(f"unsupported rollout store URL {db_url!r}: use a SQLite path or postgresql://...")
    if path in ("", ":memory:"):
        raise ConfigError("the rollout store must be durable: give a SQLite file path, not :memory:")
    parent = Path(path).expanduser().resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the directory {parent} for the rollout store: {exc}") from exc
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def redact_url(db_url: str) -> str:
    """The URL with any password replaced, for logs and /health."""
    if "://" not in db_url or "@" not in db_url:
        return db_url
    scheme, rest = db_url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
