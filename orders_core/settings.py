"""Settings every service reads, from the environment (SPEC §6).

Each service has its own settings class on this base (`orders_api.settings.ApiSettings`,
`exchange_listener.settings.ListenerSettings`, `tracker.settings.TrackerSettings`), so a bad value
of one service's variable stops that service only.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EXCHANGE_URL = "http://127.0.0.1:8500"


class Settings(BaseSettings):
    """What every service needs: the database, its pool, where to listen, how to log. Names are
    the environment variables, case-insensitive; other services' variables are ignored."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN; unset: an embedded PostgreSQL in ./.data/pg",
    )
    db_pool_min_size: int = Field(default=2, ge=0)
    db_pool_max_size: int = Field(default=20, ge=1)
    db_command_timeout_s: float = Field(
        default=10.0, gt=0, description="longest a statement may run (asyncpg command_timeout)"
    )
    db_acquire_timeout_s: float = Field(
        default=3.0, gt=0, description="longest wait for a pooled connection, connecting included"
    )

    database_direct_url: str | None = Field(
        default=None,
        description="a direct connection (no transaction pooler) for what needs a session: "
        "leadership, LISTEN, the migrations lock; unset: DATABASE_URL",
    )
    db_statement_cache_size: int | None = Field(
        default=None,
        ge=0,
        description="prepared statements cached per pooled connection; unset: 0 when "
        "DATABASE_DIRECT_URL differs from DATABASE_URL (a transaction pooler between), else 100",
    )

    bind_host: str = "127.0.0.1"
    log_level: str = "INFO"

    client_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="a client that has not sent a whole request head in this time is disconnected",
    )
    keepalive_timeout_s: float = Field(
        default=75.0, gt=0, description="an idle kept-alive connection is closed after this"
    )
    max_connections: int = Field(
        default=10_000, ge=1, description="open HTTP connections per process; past it: closed"
    )

    @property
    def statement_cache_size(self) -> int:
        """Named prepared statements do not survive a transaction pooler (PgBouncer < 1.21): a
        pooled server connection may carry another client's. Through one (DATABASE_DIRECT_URL set
        apart from DATABASE_URL), none are kept; on a direct connection they save a parse per
        statement (about a quarter of the API's CPU per order)."""
        if self.db_statement_cache_size is not None:
            return self.db_statement_cache_size
        pooled = self.database_direct_url not in (None, self.database_url)
        return 0 if pooled else 100
