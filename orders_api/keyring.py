"""API keys as the API checks them (SPEC §7): a Bearer key, against its stored hash.

Keys found are kept for KEY_CACHE_S so that a request costs no extra round trip; a revoked key is
refused within that time on every instance (while the database cannot be asked, a key checked
before stays trusted: an outage does not lock every client out). Unknown key ids are remembered
too (a bounded number), so a flood of made-up keys does not become a flood of queries.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from orders_core import apikeys
from orders_core.apikeys import Principal, Scope
from orders_core.db import DB_ERRORS, Pool
from orders_core.errors import Unauthorized

CACHE_MAX = 10_000


@dataclass(frozen=True)
class _Entry:
    row: tuple[Principal, bytes] | None  # None: no such key
    revoked: bool
    until: float


class Keyring:
    def __init__(self, pool: Pool, cache_s: float) -> None:
        self._pool = pool
        self._cache_s = cache_s
        self._cache: OrderedDict[str, _Entry] = OrderedDict()

    async def principal(self, authorization: list[str]) -> Principal:
        """The principal of the request's one `Authorization: Bearer <key>` header; raises
        Unauthorized for anything else."""
        if len(authorization) != 1:
            raise Unauthorized("Authorization: Bearer <API key> is required" if not authorization
                               else "Send one Authorization header")  # fmt: skip
        scheme, _, key = authorization[0].partition(" ")
        parts = apikeys.split(key.strip()) if scheme.lower() == "bearer" else None
        if parts is None:
            raise Unauthorized("Authorization must be: Bearer <API key>")
        key_id, secret = parts
        entry = await self._entry(key_id)
        if entry.row is None or not apikeys.proves(secret, entry.row[1]):
            raise Unauthorized("Unknown API key")
        if entry.revoked:
            raise Unauthorized("This API key was revoked")
        return entry.row[0]

    async def _entry(self, key_id: str) -> _Entry:
        now = time.monotonic()
        entry = self._cache.get(key_id)
        if entry is not None and entry.until > now:
            return entry
        try:
            row = await self._pool.fetchrow(apikeys.SELECT_KEY, key_id)
        except DB_ERRORS:
            if entry is not None and entry.row is not None:
                return entry  # the database is away: a key known a moment ago is still trusted
            raise
        if row is None:
            entry = _Entry(None, False, now + self._cache_s)
        else:
            principal = Principal(row["account_id"], key_id, Scope(row["scope"]))
            entry = _Entry((principal, row["secret_sha256"]), row["revoked"], now + self._cache_s)
        self._cache[key_id] = entry
        self._cache.move_to_end(key_id)
        while len(self._cache) > CACHE_MAX:
            self._cache.popitem(last=False)
        return entry
