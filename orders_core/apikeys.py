"""API keys (SPEC §7): their format, how they are stored and checked, and the statements that
make, list, find and revoke them. Used by `orders-keys` (orders_ops) and by the API.

A key is `ok_<id>_<secret>`: the id (12 hex digits) finds the row, the secret (32 random bytes,
URL-safe base64) proves possession. Only the secret's SHA-256 is stored, and it is compared in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID

import asyncpg

KEY_RE = re.compile(r"^ok_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
ACCOUNT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Scope(StrEnum):
    TRADE = "trade"  # create, read, cancel
    READ = "read"  # read only


@dataclass(frozen=True)
class NewKey:
    key_id: str
    key: str  # shown once, never stored
    digest: bytes


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the account, through which key, with which scope."""

    account_id: UUID
    key_id: str
    scope: Scope


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def generate() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id, f"ok_{key_id}_{secret}", digest(secret))


def split(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    match = KEY_RE.match(key)
    return None if match is None else (match[1], match[2])


def proves(secret: str, stored: bytes) -> bool:
    return hmac.compare_digest(digest(secret), stored)


UPSERT_ACCOUNT = """
INSERT INTO accounts (name) VALUES ($1)
ON CONFLICT (name) DO UPDATE SET name = excluded.name
RETURNING id"""
INSERT_KEY = "INSERT INTO api_keys (id, account_id, scope, secret_sha256) VALUES ($1, $2, $3, $4)"
SELECT_KEY = """
SELECT k.account_id, k.scope, k.secret_sha256, k.revoked_at IS NOT NULL AS revoked
  FROM api_keys AS k WHERE k.id = $1"""
LIST_KEYS = """
SELECT k.id, a.name AS account, k.scope, k.created_at, k.revoked_at
  FROM api_keys AS k JOIN accounts AS a ON a.id = k.account_id
 ORDER BY a.name, k.created_at"""
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = coalesce(revoked_at, clock_timestamp()) WHERE id = $1
RETURNING id"""


async def create(conn: asyncpg.Connection, account: str, scope: Scope) -> NewKey:
    """A new key for `account` (made if new); the caller shows `key` once."""
    if not ACCOUNT_RE.match(account):
        raise ValueError("account names are 1-64 of A-Z a-z 0-9 . _ -, starting alphanumeric")
    new = generate()
    async with conn.transaction():
        account_id = await conn.fetchval(UPSERT_ACCOUNT, account)
        await conn.execute(INSERT_KEY, new.key_id, account_id, scope.value, new.digest)
    return new


async def revoke(conn: asyncpg.Connection, key_id: str) -> bool:
    return await conn.fetchval(REVOKE_KEY, key_id) is not None


async def listed(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_KEYS)
