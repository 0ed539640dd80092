"""The exchange's knobs (SPEC §3): fault injection set at start from the environment and at run
time through `POST /_sim/config`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class SimConfig(BaseModel):
    """Every fault knob. Immutable: a change makes a new, validated instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_rate: float = Field(
        default=0.1, ge=0, le=1, description="share of placements answered 503 at once"
    )
    outage: bool = Field(default=False, description="every /v1 endpoint answers 503")
    latency_ms: int = Field(
        default=500, ge=0, description="delay before place, lookup and cancel decide"
    )
    lookup_latency_ms: int | None = Field(
        default=None,
        ge=0,
        description="delay before a lookup reads the book (reads faster than order entry); "
        "null: latency_ms",
    )
    timeout_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of placements booked, then never answered"
    )
    reject_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of placements refused with 400"
    )
    accept_duplicate_ids: bool = Field(
        default=False, description="book a second order under a client_order_id already held"
    )
    fail_next: int = Field(
        default=0, ge=0, description="the next N placements answer 503 whatever failure_rate says"
    )
    seed: int | None = Field(default=None, description="seed of the one random generator")
    # --- order lifecycle and the status stream ---
    lifecycle: bool = Field(default=True, description="orders fill or expire over time")
    fill_delay_ms: int = Field(default=1000, ge=0, description="time until an order is filled")
    partial_fill_rate: float = Field(
        default=0.3, ge=0, le=1, description="share of fills done in 2-3 parts"
    )
    limit_fill_rate: float = Field(
        default=0.5, ge=0, le=1, description="share of limit orders that fill (others expire)"
    )
    limit_expiry_ms: int = Field(
        default=5000, ge=0, description="time until an unfilled limit order expires"
    )
    retention: int = Field(default=100_000, ge=1, description="stream events kept for replay")
    heartbeat_ms: int = Field(
        default=1000, ge=1, description="idle time before the stream sends a heartbeat"
    )
    drop_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of stream events after which it disconnects"
    )
    lose_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of stream events a live connection never sends (a replay has them)",
    )
    duplicate_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of stream events sent twice"
    )
    reorder_window: int = Field(
        default=0, ge=0, description="stream events shuffled within windows of this many"
    )
    stall: bool = Field(default=False, description="the stream sends hello, then nothing")

    def updated(self, changes: Any) -> SimConfig:
        """A copy with `changes` (a JSON object of knobs) applied; raises ValueError if invalid."""
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object of knobs")
        try:
            return SimConfig.model_validate(self.model_dump() | changes, strict=True)
        except ValidationError as exc:
            raise ValueError(describe_errors(exc)) from exc


class SimSettings(BaseSettings, SimConfig):
    """The process's settings: where to listen, plus every knob as `EXCHANGE_SIM_<KNOB>`."""

    model_config = SettingsConfigDict(
        env_prefix="EXCHANGE_SIM_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    port: int = Field(default=8500, ge=0, le=65535)
    bind_host: str = Field(default="127.0.0.1", validation_alias="BIND_HOST")
    log_level: Annotated[LogLevel, BeforeValidator(lambda v: str(v).upper())] = Field(
        default="INFO", validation_alias="LOG_LEVEL"
    )

    def knobs(self) -> SimConfig:
        return SimConfig.model_validate(self.model_dump(include=set(SimConfig.model_fields)))


def describe_errors(exc: ValidationError, name: Callable[[str], str] = str) -> str:
    """`<field>: <message>` for every error, `name` spelling each field."""
    parts = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{name(field)}: {error['msg']}")
    return "; ".join(parts)
