"""The retry sweep: claim due orders from PostgreSQL and run their attempts as aiojobs jobs.

Every instance sweeps, at start-up and then every SWEEP_INTERVAL_S; `FOR UPDATE SKIP LOCKED` and
the lease make sure that one order is worked on by one instance at a time. The sweep claims no
more than the scheduler has room for, so a claimed order never waits in a queue while its lease
runs out.
"""

from __future__ import annotations

import asyncio
import logging

import aiojobs

from orders_api import metrics, store
from orders_api.placement import Placer
from orders_core.db import DB_ERRORS, Pool

log = logging.getLogger(__name__)


class Retrier:
    def __init__(
        self,
        pool: Pool,
        placer: Placer,
        scheduler: aiojobs.Scheduler,
        owner: str,
        lease_s: float,
        interval_s: float,
        capacity: int,
    ) -> None:
        self._pool = pool
        self._placer = placer
        self._scheduler = scheduler
        self._owner = owner
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._capacity = capacity

    async def sweep_once(self) -> int:
        """Claim what is due and start it; returns how many orders were claimed."""
        room = self._capacity - len(self._scheduler)
        if room <= 0:
            return 0
        rows = await store.claim_due(self._pool, self._owner, self._lease_s, room)
        for row in rows:
            await self._scheduler.spawn(self._placer.run_claimed(row))
        return len(rows)

    async def run(self) -> None:
        """Sweep until cancelled; a full batch sweeps again at once, a failed one waits."""
        while True:
            try:
                claimed = await self.sweep_once()
            except DB_ERRORS:
                metrics.SWEEP_ERRORS.inc()
                log.warning("retry sweep failed; trying again", exc_info=True)
                claimed = 0
            except Exception:  # a bug must not stop the sweeping for good
                metrics.SWEEP_ERRORS.inc()
                log.exception("retry sweep failed unexpectedly; trying again")
                claimed = 0
            if claimed == 0:
                await asyncio.sleep(self._interval_s)
            else:
                await asyncio.sleep(0)

    async def release(self) -> None:
        """Give back the leases this instance holds, so that another one resumes at once."""
        try:
            await store.release_all(self._pool, self._owner)
        except DB_ERRORS:
            log.warning("could not release leases; they expire by themselves", exc_info=True)
