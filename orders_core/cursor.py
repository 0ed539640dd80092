"""Keyset pagination cursors: an opaque token for the position (a timestamp, an id) of the last
row of a page, newest first. Every listing of the system uses the same token.

A cursor is taken only in the exact spelling `encode` gives (URL-safe base64 without padding of
`["<ISO 8601 in UTC>", "<uuid>"]`): any other token, even one that means the same position, is
refused rather than reinterpreted (SPEC §7)."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime

from orders_core import strict_json

Position = tuple[datetime, uuid.UUID]

# Before every row: the first page.
FIRST_PAGE: Position = (datetime.max.replace(tzinfo=UTC), uuid.UUID(int=(1 << 128) - 1))
BAD_CURSOR = "after must be a cursor returned by a previous page"
# What a cursor looks like (OpenAPI says the same): no token `encode` makes is longer.
PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_LENGTH = 128


class CursorError(ValueError):
    pass


def encode(at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([at.astimezone(UTC).isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> Position:
    """The position a cursor stands for; CursorError (message BAD_CURSOR) for anything else."""
    if len(cursor) > MAX_LENGTH or not cursor.isascii():
        raise CursorError(BAD_CURSOR)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, id_text = strict_json.loads(raw, max_depth=1)
        at = datetime.fromisoformat(at_text).astimezone(UTC)
        position = (at, uuid.UUID(id_text))
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise CursorError(BAD_CURSOR) from exc
    if encode(*position) != cursor:  # not a token of ours, though it may mean one
        raise CursorError(BAD_CURSOR)
    return position
