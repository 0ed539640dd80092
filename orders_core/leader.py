"""Leadership: at most one process of a kind does the work, the one holding a PostgreSQL session
advisory lock on a connection of its own (the listener and the tracker both lead this way).

The lock lives as long as the session: when the leader dies or its connection breaks, PostgreSQL
releases it and a standby takes it at its next try.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from prometheus_client import Gauge

from orders_core.db import DB_ERRORS

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
# The server ends the session of a leader that vanished without a word (a half-open connection)
# within about idle + interval * count seconds, and with it the lock, so a standby can lead.
KEEPALIVES = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


class Leadership:
    def __init__(
        self, name: str, dsn: str, key: int, gauge: Gauge, command_timeout_s: float
    ) -> None:
        self._name = name
        self._dsn = dsn
        # Every statement on the lock's connection is bounded: a leader whose connection hangs
        # gives up the lead instead of holding it, stuck, for good.
        self._command_timeout_s = command_timeout_s
        self._key = key
        self._gauge = gauge  # 1 while this process leads
        self.conn: asyncpg.Connection | None = None

    @property
    def leading(self) -> bool:
        return self.conn is not None and not self.conn.is_closed()

    async def try_lead(self) -> bool:
        """Whether this process leads now: a leader checks that its session is alive, anyone
        else tries the lock once. Database errors propagate, leadership given up."""
        if self.leading:
            assert self.conn is not None
            try:
                await self.conn.fetchval("SELECT 1", timeout=TIMEOUT_S)
            except BaseException:
                self.resign()
                raise
            return True
        self.resign()
        conn = await asyncpg.connect(
            self._dsn,
            timeout=TIMEOUT_S,
            command_timeout=self._command_timeout_s,
            server_settings=KEEPALIVES,
        )
        try:
            took = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", self._key, timeout=TIMEOUT_S
            )
        except BaseException:
            conn.terminate()
            raise
        if not took:
            await conn.close()
            return False
        self.conn = conn
        self._gauge.set(1)
        log.info("%s leads", self._name)
        return True

    async def wait(self, poll_s: float) -> asyncpg.Connection:
        """The lock's connection, once this process leads; tries every `poll_s` until then."""
        while True:
            try:
                if await self.try_lead():
                    assert self.conn is not None
                    return self.conn
            except DB_ERRORS as exc:
                log.warning("database unreachable while waiting to lead: %r", exc)
            await asyncio.sleep(poll_s)

    def resign(self) -> None:
        """End the session (PostgreSQL releases its lock at once) and stop leading."""
        conn, self.conn = self.conn, None
        self._gauge.set(0)
        if conn is not None and not conn.is_closed():
            conn.terminate()
