"""The exchange's event log (SPEC §3): every change of an order as an execution report with a
global, gap-free `seq`, a bounded retention for replay, and the live subscribers of the stream."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
# What a subscriber's queue carries: an event, or None when the connection must close.
Subscriber = asyncio.Queue[Event | None]


class EventLog:
    """Events `1..latest` of the current epoch; the newest `retention()` of them are kept."""

    def __init__(self, retention: Callable[[], int]) -> None:
        self._retention = retention
        self._subscribers: set[Subscriber] = set()
        self.epoch = ""
        self.latest = 0
        self._events: deque[Event] = deque()
        self.reset()

    def reset(self) -> None:
        """A new epoch: `seq` starts again at 0, nothing retained, every stream closed."""
        self.epoch = uuid.uuid4().hex
        self.latest = 0
        self._events = deque()
        self.disconnect_all()

    def append(self, report: Event) -> Event:
        """Give `report` the next `seq`, keep it, and hand it to every live subscriber."""
        self.latest += 1
        event = {"type": "execution_report", "seq": self.latest} | report
        self._events.append(event)
        while len(self._events) > self._retention():
            self._events.popleft()
        for subscriber in self._subscribers:
            subscriber.put_nowait(event)
        return event

    def retained_after(self, from_seq: int) -> list[Event] | None:
        """Events `from_seq+1..latest`, or None when some of them are no longer retained
        (or `from_seq` is beyond `latest`: a position this epoch never reached)."""
        if from_seq > self.latest:
            return None
        if from_seq == self.latest:
            return []
        if not self._events or self._events[0]["seq"] > from_seq + 1:
            return None
        return [event for event in self._events if event["seq"] > from_seq]

    def subscribe(self) -> Subscriber:
        """Every event appended from now on; no await lies between this and a `retained_after`
        taken at the same time, so replay and live events join without gap or overlap."""
        subscriber: Subscriber = asyncio.Queue()
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def disconnect_all(self) -> None:
        """Tell every live stream connection to close."""
        subscribers, self._subscribers = self._subscribers, set()
        for subscriber in subscribers:
            subscriber.put_nowait(None)
