"""The listener's settings: the shared base plus how it follows the stream (SPEC §4, §6)."""

from __future__ import annotations

from pydantic import Field

from orders_core.settings import DEFAULT_EXCHANGE_URL, Settings


class ListenerSettings(Settings):
    listener_port: int = Field(default=8001, ge=0, le=65535)
    exchange_url: str = DEFAULT_EXCHANGE_URL

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
