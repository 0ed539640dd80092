"""The seeded workload: orders posted to the API instances at a bounded rate, most with an
Idempotency-Key, some sent twice at once (to one instance or to both), a share of them cancelled
(DELETE /orders/{id}: right after the POST was answered or a little later, some twice), and every
request and its answer recorded.

A client behaves as a careful one would: a keyed order whose request got no answer (connection
refused or broken, timed out) or a 500 is sent again with the same key, to the other instance
after a pause; an order without a key is never resent (that could place it twice). A cancel that
got no answer or a 503 is asked again (a repeat asks nothing more).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp

ISINS = ("US0378331005", "DE0007164600", "GB0002634946", "IE00B4L5Y983")
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=15)
RESENDS = 3


@dataclass
class Sent:
    """One HTTP request of the workload and what came back."""

    order: int  # the workload's order number (one order may take several requests)
    key: str | None
    api: int
    sent_at: datetime
    answered_at: datetime | None = None
    status: int | None = None  # None: no answer at all
    order_id: str | None = None
    placement: str | None = None  # the order's status in a 201
    message: str | None = None  # the body of any answer but a readable 201
    error: str | None = None


@dataclass(frozen=True)
class Spec:
    n: int
    body: dict[str, Any]
    key: str | None
    apis: tuple[int, ...]  # one instance, or two for an order sent twice at once
    pause_s: float  # before a resend


@dataclass(frozen=True)
class CancelPlan:
    """When an order is cancelled: one DELETE per delay (seconds after its POST was answered),
    each to its instance."""

    delays_s: tuple[float, ...]
    apis: tuple[int, ...]


@dataclass
class Cancel:
    """One DELETE /orders/{id} of the workload and what came back."""

    order: int
    order_id: str
    api: int
    sent_at: datetime
    answered_at: datetime | None = None
    status: int | None = None  # None: no answer at all
    cancel_status: str | None = None  # the order's, in a 202 or a 409
    message: str | None = None  # a 409's message, or the body of any other answer
    error: str | None = None


def specs(seed: int, count: int, apis: int, key_share: float, twin_share: float) -> list[Spec]:
    """The orders of a run, all drawn up front from the seed."""
    rng = random.Random(f"workload:{seed}")
    out = []
    for n in range(count):
        body: dict[str, Any] = {
            "type": rng.choice(["market", "limit"]),
            "side": rng.choice(["buy", "sell"]),
            "instrument": rng.choice(ISINS),
            "quantity": rng.randint(1, 100),
        }
        if body["type"] == "limit":
            body["limit_price"] = f"{rng.randint(100, 99999) / 100:.2f}"
        key = f"chaos-{seed}-{n}" if rng.random() < key_share else None
        first = rng.randrange(apis)
        targets: tuple[int, ...] = (first,)
        if key is not None and rng.random() < twin_share:
            targets = (first, rng.randrange(apis))
        out.append(Spec(n, body, key, targets, rng.uniform(0.3, 1.5)))
    return out


def cancel_plans(seed: int, count: int, apis: int, share: float) -> dict[int, CancelPlan]:
    """Which orders of a run are cancelled, and when: drawn from the seed apart from `specs`
    (the orders stay those of a run without cancels). Four in ten at once, the others within a
    few seconds (most then filled or expired: 409, or 202 and REFUSED); one in four twice, at
    once (to another instance) or a moment later."""
    rng = random.Random(f"cancels:{seed}")
    plans = {}
    for n in range(count):
        if rng.random() >= share:
            continue
        first = 0.0 if rng.random() < 0.4 else rng.uniform(0.1, 4.0)
        delays: tuple[float, ...] = (first,)
        if rng.random() < 0.25:
            delays += (first + (0.0 if rng.random() < 0.5 else rng.uniform(0.05, 1.5)),)
        plans[n] = CancelPlan(delays, tuple(rng.randrange(apis) for _ in delays))
    return plans


class Workload:
    def __init__(
        self,
        urls: list[str],
        orders: list[Spec],
        rate: float,
        api_key: str | None = None,
        cancels: dict[int, CancelPlan] | None = None,
    ) -> None:
        self._urls = urls
        self._auth = {} if api_key is None else {"Authorization": f"Bearer {api_key}"}
        self._orders = orders
        self._rate = rate
        self._cancels = cancels or {}
        self.sent: list[Sent] = []
        self.cancels: list[Cancel] = []
        self.started = 0
        self.finished = 0

    async def run(self) -> None:
        t0 = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as http:
            try:
                for spec in self._orders:
                    await asyncio.sleep(max(0.0, t0 + spec.n / self._rate - time.monotonic()))
                    tasks.append(asyncio.create_task(self._order(http, spec)))
                    self.started += 1
                await asyncio.gather(*tasks)
            finally:  # interrupted: no order goes on without its session
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _order(self, http: aiohttp.ClientSession, spec: Spec) -> None:
        answers = await asyncio.gather(*(self._post(http, spec, api) for api in spec.apis))
        created = [a.order_id for a in answers if a.order_id is not None]
        for resend in range(1, RESENDS + 1):
            if spec.key is None or not all(a.status in (None, 500) for a in answers):
                break
            await asyncio.sleep(spec.pause_s * resend)
            api = (spec.apis[0] + resend) % len(self._urls)
            answers = [await self._post(http, spec, api)]
            created += [a.order_id for a in answers if a.order_id is not None]
        plan = self._cancels.get(spec.n)
        if plan is not None and created:
            await asyncio.gather(
                *(
                    self._cancel(http, spec, created[0], delay, api)
                    for delay, api in zip(plan.delays_s, plan.apis, strict=True)
                )
            )
        self.finished += 1

    async def _cancel(
        self, http: aiohttp.ClientSession, spec: Spec, order_id: str, delay_s: float, api: int
    ) -> None:
        await asyncio.sleep(delay_s)
        for resend in range(RESENDS + 1):
            if resend:
                await asyncio.sleep(spec.pause_s * resend)
            answer = await self._delete(http, spec.n, order_id, (api + resend) % len(self._urls))
            if answer.status not in (None, 503):
                return

    async def _delete(self, http: aiohttp.ClientSession, n: int, order_id: str, api: int) -> Cancel:
        sent = Cancel(n, order_id, api, datetime.now(UTC))
        self.cancels.append(sent)
        url = f"{self._urls[api]}/orders/{order_id}"
        raw = await _request(http, "DELETE", url, sent, headers=self._auth)
        if raw is None:
            return sent
        try:
            answer = json.loads(raw)
            order = answer["order"] if sent.status == 409 else answer
            sent.cancel_status = order.get("cancel_status") if sent.status in (202, 409) else None
            if sent.status != 202:
                sent.message = str(answer["message"])[:300]
        except (ValueError, KeyError, TypeError, AttributeError):
            sent.message = raw[:300].decode(errors="replace")
        return sent

    async def _post(self, http: aiohttp.ClientSession, spec: Spec, api: int) -> Sent:
        headers = self._auth | ({} if spec.key is None else {"Idempotency-Key": spec.key})
        sent = Sent(spec.n, spec.key, api, datetime.now(UTC))
        self.sent.append(sent)
        url = f"{self._urls[api]}/orders"
        raw = await _request(http, "POST", url, sent, json=spec.body, headers=headers)
        if raw is None:
            return sent
        if sent.status != 201:
            sent.message = raw[:300].decode(errors="replace")  # the whole answer, as it came
            return sent
        try:
            answer = json.loads(raw)
            sent.order_id = str(answer["id"])
            sent.placement = str(answer["status"])
        except (ValueError, KeyError, TypeError):
            sent.message = raw[:300].decode(errors="replace")
        return sent


class _Answered(Protocol):
    status: int | None
    error: str | None
    answered_at: datetime | None


async def _request(
    http: aiohttp.ClientSession, method: str, url: str, record: _Answered, **kwargs: Any
) -> bytes | None:
    """The answer's body, its status and time noted in `record`; None when there was no answer,
    or not all of it (`record.error` says why)."""
    try:
        async with http.request(method, url, **kwargs) as resp:
            record.status = resp.status
            return await resp.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        record.error = repr(exc)[:200]
        return None
    finally:
        record.answered_at = datetime.now(UTC)
