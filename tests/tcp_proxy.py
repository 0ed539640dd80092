"""A TCP proxy in front of PostgreSQL that a test can cut and restore: the database "goes down"
for the service under test (connections reset, new ones refused) without stopping the server."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit

from tests.sim import free_port


class DbProxy:
    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self._target_host = parts.hostname or "127.0.0.1"
        self._target_port = parts.port or 5432
        self._unix = self._target_host.startswith("/") or "host=/" in parts.query
        if "host=/" in parts.query:
            self._target_host = parts.query.split("host=", 1)[1].split("&", 1)[0]
        self.port = free_port()
        netloc = f"{parts.username or 'postgres'}@127.0.0.1:{self.port}"
        self.dsn = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._unix:
            path = f"{self._target_host}/.s.PGSQL.{self._target_port}"
            return await asyncio.open_unix_connection(path)
        return await asyncio.open_connection(self._target_host, self._target_port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._open_target()
        self._writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


class VenueLink:
    """A TCP proxy in front of the exchange that does not pass on a client's departure: when the
    client closes a connection with a request in flight, the proxy keeps the exchange's side open
    until the exchange answers, then closes it. exchange-sim cancels a request whose client has
    gone; over this link it decides it, late, as a real venue whose client timed out would
    (SPEC §3: "a slow exchange really can book an order after the client gave up")."""

    def __init__(self, exchange_url: str) -> None:
        parts = urlsplit(exchange_url)
        self._target_host = parts.hostname or "127.0.0.1"
        self._target_port = parts.port or 80
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self._target_host, self._target_port)
        self._writers |= {writer, up_writer}
        client_gone = asyncio.Event()

        async def requests() -> None:  # client -> exchange; its end is not passed on
            with contextlib.suppress(ConnectionError, OSError):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()
            client_gone.set()
            writer.transport.abort()

        async def answers() -> None:  # exchange -> client, until the first answer nobody awaits
            with contextlib.suppress(ConnectionError, OSError):
                while data := await up_reader.read(65536):
                    if client_gone.is_set():
                        break
                    writer.write(data)
                    await writer.drain()
            up_writer.transport.abort()

        await asyncio.gather(requests(), answers())
        self._writers -= {writer, up_writer}
