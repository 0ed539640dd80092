"""A small Server-Sent Events reader for tests: events and comment lines off a real response."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Event:
    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)

    @property
    def order(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads("\n".join(self.data))
        return body


class SseReader:
    """Reads one text/event-stream response; `comments` collects the lines starting with ':'."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self, timeout_s: float = 10.0) -> Event:
        """The next event; TimeoutError when none comes in time, EOFError when the stream ends."""
        return await asyncio.wait_for(self._next(), timeout_s)

    async def take(self, count: int, timeout_s: float = 10.0) -> list[Event]:
        return [await self.next(timeout_s) for _ in range(count)]

    async def until(self, done: Any, timeout_s: float = 15.0) -> list[Event]:
        """Events until `done(events)` is true."""
        events: list[Event] = []
        while not done(events):
            events.append(await self.next(timeout_s))
        return events

    async def comment(self, timeout_s: float = 10.0) -> str:
        """Wait for the next comment line (a heartbeat)."""
        seen = len(self.comments)

        async def wait() -> str:
            while len(self.comments) == seen:
                line = await self.response.content.readline()
                if not line:
                    raise EOFError("stream ended")
                text = line.decode().rstrip("\r\n")
                if text.startswith(":"):
                    self.comments.append(text)
            return self.comments[-1]

        return await asyncio.wait_for(wait(), timeout_s)

    async def _next(self) -> Event:
        event = Event()
        while True:
            line = await self.response.content.readline()
            if not line:
                raise EOFError("stream ended")
            text = line.decode().rstrip("\r\n")
            if text == "":
                if event.data or event.id is not None:
                    return event
                continue
            if text.startswith(":"):
                self.comments.append(text)
                continue
            name, _, value = text.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                event.id = value
            elif name == "event":
                event.event = value
            elif name == "data":
                event.data.append(value)
