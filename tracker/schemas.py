"""The tracker's JSON shapes (SPEC §5)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from orders_core.domain import Isin
from orders_core.params import Instant, PageQuery

FAILURE_FIELDS = (
    "id",
    "instrument",
    "side",
    "type",
    "quantity",
    "created_at",
    "failed_at",
    "attempts",
    "last_error",
)


class FailureModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID
    instrument: str
    side: str
    type: str
    quantity: int
    created_at: datetime
    failed_at: datetime
    attempts: int
    last_error: str | None

    @field_serializer("created_at", "failed_at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat()  # "+00:00", as the API writes it


class FailuresPage(BaseModel):
    failures: list[FailureModel]
    next: str | None


class FailuresQuery(PageQuery):
    """`GET /failures`: paging as every listing, plus time and instrument filters."""

    since: Instant | None = Field(default=None, description="failed at or after (ISO 8601)")
    until: Instant | None = Field(default=None, description="failed before (ISO 8601)")
    instrument: Isin | None = None
    format: Literal["json", "csv"] = "json"
