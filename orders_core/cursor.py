"""Keyset pagination cursors: an opaque token for the position (a timestamp, an id) of the last
row of a page, newest first. Every listing of the system uses the same token."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime

Position = tuple[datetime, uuid.UUID]

# Before every row: the first page.
FIRST_PAGE: Position = (datetime.max.replace(tzinfo=UTC), uuid.UUID(int=(1 << 128) - 1))
BAD_CURSOR = "after must be a cursor returned by a previous page"


class CursorError(ValueError):
    pass


def encode(at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> Position:
    """The position a cursor stands for; CursorError (message BAD_CURSOR) for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        at = datetime.fromisoformat(at)
        if at.tzinfo is None:
            raise CursorError(BAD_CURSOR)
        # In UTC, or not at all: an offset that moves it past year 1 or 9999 is no position.
        return at.astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error) as exc:
        raise CursorError(BAD_CURSOR) from exc
