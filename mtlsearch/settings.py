"""The one settings object of mtlsearch (environment prefix ``MTLSEARCH_``).

Every process (API server, worker, CLI) reads its configuration here and nowhere else, at its
top (CLI command, API app factory); the layers below are given the values they need
(`Settings.database_config` for `storage`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from storage.database import DatabaseConfig

DEFAULT_DB_URL = "sqlite:///mtlsearch.db"


class Settings(BaseSettings):
    """Configuration from environment variables ``MTLSEARCH_*`` (or a ``.env`` file)."""

    model_config = SettingsConfigDict(env_prefix="MTLSEARCH_", env_file=".env", extra="ignore")

    db_url: str = Field(
        DEFAULT_DB_URL,
        description="SQLAlchemy URL of the shared database: a SQLite file (default, one machine) "
        "or postgresql+psycopg://user@host/db for several machines.",
    )
    data_dir: Path | None = Field(
        None,
        description="Directory holding the data sets (mnist/, uci-adult/). Required by "
        "experiments that read files.",
    )
    api_token: str | None = Field(
        None,
        description="When set, the bearer token every request that is not GET, HEAD or OPTIONS "
        "needs, to the API and to the mounted optuna-dashboard (which is then read-only for a "
        "browser). Checked before the body is read.",
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1,
        description="Largest request body accepted (API and dashboard), in bytes; a larger one "
        "is refused with 413 and never buffered.",
    )
    max_drain_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="How much of a refused (413) body the server still reads and discards, in "
        "bytes, so that a client that reads only after sending its whole body reads the 413 "
        "rather than a connection reset. A body announced or streamed beyond it is answered "
        "at once and the connection closed. 0: answer at once.",
    )
    trusted_hosts: list[str] = Field(
        default_factory=list,
        description="Host headers the server answers (Starlette's TrustedHostMiddleware, e.g. "
        '["mtl.example.com", "*.example.com"]); others get 400. Empty (default): any host.',
    )
    api_url: str = Field(
        "http://127.0.0.1:8000", description="Where the CLI and client reach the API."
    )
    host: str = Field("127.0.0.1", description="Address the API server binds.")
    port: int = Field(8000, ge=0, le=65535, description="Port of the API server.")
    allowed_experiment_modules: list[str] = Field(
        default_factory=list,
        description="Python modules a worker may import to register user experiments. Only "
        "this local setting can name them; a REST request never can.",
    )
    worker_heartbeat_s: float = Field(10.0, gt=0, description="Seconds between worker heartbeats.")
    stale_after_s: float = Field(
        60.0,
        gt=0,
        description="The trials of a worker whose heartbeat is older than this are failed and "
        "re-queued once.",
    )
    db_pool_size: int = Field(
        5,
        ge=1,
        description="PostgreSQL connections a process keeps open (one pool per process). A "
        "worker uses about three at once (asker, teller, heartbeat); size the server's "
        "max_connections for (pool size + overflow) x (workers + API servers).",
    )
    db_max_overflow: int = Field(
        5, ge=0, description="PostgreSQL connections a process may open above db_pool_size."
    )
    schema_wait_s: float = Field(
        120.0,
        ge=0,
        description="How long a worker started before the schema exists (or is at head) waits "
        "for it, polling, before it fails; 0: fail at once. A schema newer than the worker's, or "
        "not mtlsearch's, fails at once.",
    )
    log_level: str = Field("INFO", description="Python logging level.")
    test_hook: Literal["exit-after-ask"] | None = Field(
        None,
        description="TEST HOOK for the chaos tests, never for production: 'exit-after-ask' "
        "makes a worker die (os._exit) right after study.ask(), before the trial's first "
        "heartbeat.",
    )

    def database_config(self) -> DatabaseConfig:
        """What `storage.Database` needs of these settings: its connection pool."""
        # Imported here: `storage` brings SQLAlchemy, Optuna and torch, which the client and
        # the CLI's client verbs read settings without needing (`import mtlsearch.client`).
        from storage.database import DatabaseConfig

        return DatabaseConfig(pool_size=self.db_pool_size, max_overflow=self.db_max_overflow)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        valid = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if value.upper() not in valid:
            raise ValueError(f"log_level must be one of {', '.join(valid)}, got {value!r}")
        return value.upper()


@lru_cache
def get_settings() -> Settings:
    return Settings()
