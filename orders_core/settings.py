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

    bind_host: str = "127.0.0.1"
    log_level: str = "INFO"
