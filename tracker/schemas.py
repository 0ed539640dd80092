"""The tracker's JSON shapes (SPEC §5)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, field_serializer

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
