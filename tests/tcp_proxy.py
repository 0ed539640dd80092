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
