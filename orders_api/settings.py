"""The API's settings: the shared base plus the placement rule (SPEC §2, §6)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from orders_core.settings import DEFAULT_EXCHANGE_URL, Settings


class ApiSettings(Settings):
    orders_api_port: int = Field(default=8000, ge=0, le=65535)
    orders_api_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API processes sharing the port (SO_REUSEPORT), each an instance of its own",
    )

    exchange_url: str = DEFAULT_EXCHANGE_URL
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
    lease_s: float = Field(default=20.0, gt=0, description="how long a claimed order stays claimed")
    sweep_interval_s: float = Field(
        default=1.0, gt=0, description="how often due retries are claimed"
    )
    retry_concurrency: int = Field(default=200, ge=1, description="retry jobs run at once")
    key_cache_s: float = Field(
        default=5.0, ge=0, description="how long a checked API key is trusted without a query"
    )
    rate_limit_per_s: float = Field(
        default=200.0, gt=0, description="requests a second per API key (token bucket refill)"
    )
    rate_limit_burst: int = Field(
        default=400, ge=1, description="requests per API key beyond the rate (bucket size)"
    )
    # Live updates (SPEC §9).
    sse_heartbeat_s: float = Field(
        default=15.0, gt=0, description="a comment line on idle update streams this often"
    )
    sse_send_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="an update stream whose client takes no write this long ends",
    )
    updates_poll_s: float = Field(
        default=1.0, gt=0, description="update streams look at the log this often without a NOTIFY"
    )
    updates_sequence_interval_s: float = Field(
        default=0.05, gt=0, description="how often committed updates are given their cursor"
    )

    @model_validator(mode="after")
    def _lease_outlives_an_attempt(self) -> Self:
        # Under one lease: an exchange call (a lookup, or a placement: the attempt renews the
        # lease when it starts), then one statement, which may first wait for a connection. Past
        # the lease another claim may start; its token fences the late writer off, but the work
        # of this one is lost, so the lease must outlive what it covers.
        covered = self.placement_timeout_s + self.db_acquire_timeout_s + self.db_command_timeout_s
        if self.lease_s <= covered:
            raise ValueError(
                "LEASE_S must exceed PLACEMENT_TIMEOUT_S + DB_ACQUIRE_TIMEOUT_S + "
                f"DB_COMMAND_TIMEOUT_S ({covered:g} s)"
            )
        if self.retry_cap_s < self.retry_base_s:
            raise ValueError("RETRY_CAP_S must be >= RETRY_BASE_S")
        return self
