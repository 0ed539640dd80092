"""Our client of the exchange's HTTP API: place, look up and cancel orders, each answer classified.

Classification follows SPEC §2 step 4: 201/409 accepted; 400 refused (final); 408 its deadline
passed and nothing was booked; 503, other 5xx, timeouts and broken connections: outcome unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import aiohttp
from pydantic import ValidationError

from orders_core.wire import ExchangeError, ExchangeOrder, PlaceOrderRequest


class Placed(StrEnum):
    ACCEPTED = "accepted"  # booked now or already held (409)
    REJECTED = "rejected"  # the order itself is refused: final
    EXPIRED = "expired"  # its deadline passed at the venue: nothing booked
    UNKNOWN = "unknown"  # 5xx, timeout, broken connection: it may or may not be booked


class Found(StrEnum):
    FOUND = "found"
    ABSENT = "absent"
    ERROR = "error"


class Cancelled(StrEnum):
    CANCELED = "canceled"  # 200: the exchange canceled the order it held
    TERMINAL = "terminal"  # 409: it holds the order, already ended (filled, canceled, expired...)
    ABSENT = "absent"  # its own 404: it holds no order with this id (when asked)
    ERROR = "error"  # anything else: nothing known


@dataclass(frozen=True)
class PlaceResult:
    outcome: Placed
    detail: str
    http_status: int | None = None  # None: no answer (timeout, broken connection)
    exchange_order_id: str | None = None


@dataclass(frozen=True)
class LookupResult:
    outcome: Found
    detail: str
    order: ExchangeOrder | None = None


@dataclass(frozen=True)
class CancelResult:
    outcome: Cancelled
    detail: str
    order: ExchangeOrder | None = None  # as the exchange holds it (CANCELED, TERMINAL)


def new_session(max_connections: int) -> aiohttp.ClientSession:
    """One session per process, its pool sized for a slow venue (the default of 100 throttles)."""
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, keepalive_timeout=30)
    return aiohttp.ClientSession(connector=connector, raise_for_status=False)


class ExchangeClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout_s: float) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def place(self, request: PlaceOrderRequest) -> PlaceResult:
        url = f"{self._base}/v1/orders"
        body = request.model_dump_json()
        headers = {"Content-Type": "application/json"}
        try:
            async with self._session.post(
                url, data=body, headers=headers, timeout=self._timeout
            ) as resp:
                return _classify_placement(resp.status, await resp.read())
        except TimeoutError:
            return PlaceResult(Placed.UNKNOWN, "exchange timed out")
        except (aiohttp.ClientError, OSError) as exc:
            return PlaceResult(Placed.UNKNOWN, f"exchange connection error: {exc!r}")

    async def lookup(self, client_order_id: str) -> LookupResult:
        url = f"{self._base}/v1/orders/{client_order_id}"
        try:
            async with self._session.get(url, timeout=self._timeout) as resp:
                raw = await resp.read()
                if resp.status == 200:
                    return LookupResult(
                        Found.FOUND, "found", ExchangeOrder.model_validate_json(raw)
                    )
                if resp.status == 404 and _venue_error(resp.content_type, raw):
                    return LookupResult(Found.ABSENT, "not found")
                # A 404 that is not the venue's own JSON answer (a proxy's, a wrong path's) says
                # nothing about the order.
                return LookupResult(Found.ERROR, _describe(resp.status, raw))
        except TimeoutError:
            return LookupResult(Found.ERROR, "exchange lookup timed out")
        except (aiohttp.ClientError, OSError, ValidationError) as exc:
            return LookupResult(Found.ERROR, f"exchange lookup error: {exc!r}")

    async def cancel(self, client_order_id: str) -> CancelResult:
        url = f"{self._base}/v1/orders/{client_order_id}"
        try:
            async with self._session.delete(url, timeout=self._timeout) as resp:
                return _classify_cancel(resp.status, resp.content_type, await resp.read())
        except TimeoutError:
            return CancelResult(Cancelled.ERROR, "exchange cancel timed out")
        except (aiohttp.ClientError, OSError) as exc:
            return CancelResult(Cancelled.ERROR, f"exchange cancel error: {exc!r}")


def _classify_cancel(status: int, content_type: str, raw: bytes) -> CancelResult:
    detail = _describe(status, raw)
    if status in (200, 409):
        try:
            order = ExchangeOrder.model_validate_json(raw)
        except ValidationError:
            return CancelResult(Cancelled.ERROR, f"exchange {status}: unreadable order body")
        outcome = Cancelled.CANCELED if status == 200 else Cancelled.TERMINAL
        return CancelResult(outcome, f"exchange {status}: {order.status}", order)
    if status == 404 and _venue_error(content_type, raw):
        return CancelResult(Cancelled.ABSENT, "not found")
    return CancelResult(Cancelled.ERROR, detail)


def _classify_placement(status: int, raw: bytes) -> PlaceResult:
    detail = _describe(status, raw)
    if status in (200, 201, 409):
        try:
            order = ExchangeOrder.model_validate_json(raw)
        except ValidationError:
            return PlaceResult(Placed.UNKNOWN, f"{detail}: unreadable order body", status)
        return PlaceResult(Placed.ACCEPTED, detail, status, order.exchange_order_id)
    if status == 408:
        return PlaceResult(Placed.EXPIRED, detail, status)
    if status == 400:
        return PlaceResult(Placed.REJECTED, detail, status)
    return PlaceResult(Placed.UNKNOWN, detail, status)


def _venue_error(content_type: str, raw: bytes) -> bool:
    """Whether a body is the exchange's JSON error (`{"message": ...}`)."""
    if content_type != "application/json":
        return False
    try:
        return bool(ExchangeError.model_validate_json(raw).message)
    except ValidationError:
        return False


def _describe(status: int, raw: bytes) -> str:
    try:
        message = ExchangeError.model_validate_json(raw).message
    except ValidationError:
        message = raw[:200].decode(errors="replace")
    return f"exchange {status}: {message}".rstrip(": ")
