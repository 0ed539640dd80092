"""Settings shared by every service, read from the environment (SPEC §6)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the system. Names are the environment variables, case-insensitive."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN; unset: an embedded PostgreSQL in ./.data/pg",
    )
    db_pool_min_size: int = Field(default=2, ge=0)
    db_pool_max_size: int = Field(default=20, ge=1)
    db_command_timeout_s: float = Field(default=10.0, gt=0)

    bind_host: str = "127.0.0.1"
    orders_api_port: int = Field(default=8000, ge=0, le=65535)
    listener_port: int = Field(default=8001, ge=0, le=65535)
    tracker_port: int = Field(default=8002, ge=0, le=65535)
    exchange_sim_port: int = Field(default=8500, ge=0, le=65535)

    exchange_url: str = "http://127.0.0.1:8500"
    exchange_max_connections: int = Field(
        default=2000, ge=1, description="HTTP connection pool size towards the exchange"
    )

    placement_timeout_s: float = Field(default=2.0, gt=0)
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_cap_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    clock_skew_s: float = Field(
        default=1.0, ge=0, description="margin past a request's deadline before 'not found' counts"
    )
    lease_s: float = Field(default=15.0, gt=0, description="how long a claimed order stays claimed")
    sweep_interval_s: float = Field(
        default=1.0, gt=0, description="how often due retries are claimed"
    )
    retry_concurrency: int = Field(default=200, ge=1, description="retry jobs run at once")

    listener_batch_max: int = Field(default=500, ge=1, description="events written per batch")
    listener_flush_ms: int = Field(default=50, ge=1, description="longest wait to fill a batch")
    listener_dead_after_s: float = Field(
        default=10.0, gt=0, description="silence (no event, no heartbeat) that means a dead peer"
    )
    listener_gap_timeout_s: float = Field(
        default=2.0, gt=0, description="how long a gap in seq may wait for reordered events"
    )
    listener_reconnect_min_s: float = Field(default=0.5, gt=0)
    listener_reconnect_max_s: float = Field(default=10.0, gt=0)
    listener_leader_poll_s: float = Field(
        default=1.0, gt=0, description="how often a standby listener tries to take the lead"
    )

    tracker_webhook_url: str | None = None
    tracker_stuck_after_s: float = Field(default=300.0, gt=0)
    tracker_poll_interval_s: float = Field(
        default=1.0, gt=0, description="how often the tracker looks for new failures"
    )
    tracker_report_url: str | None = Field(
        default=None, description="the tracker's public URL for links; unset: its bind address"
    )
    tracker_webhook_timeout_s: float = Field(default=5.0, gt=0)
    tracker_webhook_retry_base_s: float = Field(default=1.0, gt=0)
    tracker_webhook_retry_cap_s: float = Field(default=300.0, gt=0)

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _lease_outlives_an_attempt(self) -> Self:
        # An attempt is a lookup plus a placement, each bounded by the placement timeout; the
        # lease must outlive both, or another instance could claim an order still in an attempt.
        if self.lease_s <= 2 * self.placement_timeout_s:
            raise ValueError("LEASE_S must exceed 2 * PLACEMENT_TIMEOUT_S")
        if self.retry_cap_s < self.retry_base_s:
            raise ValueError("RETRY_CAP_S must be >= RETRY_BASE_S")
        return self
