"""The tracker's settings: the shared base plus reports and the webhook (SPEC §5, §6)."""

from __future__ import annotations

from pydantic import Field

from orders_core.settings import Settings


class TrackerSettings(Settings):
    tracker_port: int = Field(default=8002, ge=0, le=65535)

    tracker_webhook_url: str | None = None
    tracker_stuck_after_s: float = Field(default=300.0, gt=0)
    tracker_cancel_stuck_after_s: float = Field(
        default=60.0, gt=0, description="a cancel PENDING longer than this is reported"
    )
    tracker_poll_interval_s: float = Field(
        default=1.0, gt=0, description="how often the tracker looks for new failures"
    )
    tracker_report_url: str | None = Field(
        default=None, description="the tracker's public URL for links; unset: its bind address"
    )
    tracker_webhook_timeout_s: float = Field(default=5.0, gt=0)
    tracker_webhook_retry_base_s: float = Field(default=1.0, gt=0)
    tracker_webhook_retry_cap_s: float = Field(default=300.0, gt=0)

    events_retention_days: int = Field(
        default=90, ge=1, description="how long exchange events are kept"
    )
    reports_retention_days: int = Field(
        default=90, ge=1, description="how long delivered reports are kept"
    )
    idempotency_retention_days: int = Field(
        default=30, ge=1, description="how long an Idempotency-Key keeps its order"
    )
    updates_retention_days: int = Field(
        default=7, ge=1, description="how long the order update log (GET /orders/updates) is kept"
    )
    retention_interval_s: float = Field(
        default=3600.0, gt=0, description="how often the leading tracker purges"
    )
