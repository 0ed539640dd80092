"""Webhook delivery of reports: plain JSON, one POST per report, retried with backoff.

The receiver deduplicates: every POST carries `Idempotency-Key: <kind>:<order id>` (the same on
every retry of a report) and `X-Order-Id`. A 2xx answer is a delivery; anything else, or no
answer within the timeout, is retried later with capped exponential backoff and jitter.
"""

from __future__ import annotations

import json
import random
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg

from orders_core.backoff import backoff_s
from tracker.settings import TrackerSettings


def report_body(kind: str, row: asyncpg.Record, report_url: str) -> dict[str, Any]:
    """What the log line and the webhook carry about one reported order."""
    order = {k: row[k] for k in ("instrument", "side", "type", "quantity", "attempts")}
    order |= {
        "id": str(row["id"]),
        "created_at": row["created_at"].isoformat(),
        "failed_at": row["failed_at"].isoformat() if row.get("failed_at") else None,
        "last_error": row["last_error"],
    }
    return {"kind": kind, "order_id": str(row["id"]), "order": order, "report_url": report_url}


def idempotency_key(kind: str, order_id: UUID) -> str:
    return f"{kind}:{order_id}"


_RNG = random.Random()


def retry_delay(settings: TrackerSettings, attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones (capped, jittered)."""
    return backoff_s(
        attempts, settings.tracker_webhook_retry_base_s, settings.tracker_webhook_retry_cap_s, _RNG
    )


class Webhook:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout_s: float) -> None:
        self._session = session
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def post(self, kind: str, order_id: UUID, body: dict[str, Any]) -> str | None:
        """None when delivered, else why not."""
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key(kind, order_id),
            "X-Order-Id": str(order_id),
        }
        try:
            async with self._session.post(
                self._url, data=json.dumps(body), headers=headers, timeout=self._timeout
            ) as resp:
                if 200 <= resp.status < 300:
                    return None
                return f"webhook answered {resp.status}"
        except TimeoutError:
            return "webhook timed out"
        except (aiohttp.ClientError, OSError) as exc:
            return f"webhook connection error: {exc!r}"
