"""Accounts and API keys (SPEC §7, issue 10): who may call /orders, and whose orders they see."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from orders_core.apikeys import KEY_RE, Scope
from tests.api_fixtures import ApiFactory
from tests.helpers import MARKET, bearer, make_key
from tests.tcp_proxy import DbProxy

NO_KEY: dict[str, str] = {"X-Nothing": "1"}  # a client without Authorization


async def _unauthorized(resp: Any) -> str:
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    message: str = (await resp.json())["message"]
    return message


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-key",
        "Bearer ok_0123456789ab_" + "A" * 43,  # well formed, unknown
    ],
)
async def test_no_valid_key_is_401(
    make_api: ApiFactory, db_url: str, authorization: str | None
) -> None:
    api = await make_api(headers=NO_KEY)
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (("GET", "/orders"), ("POST", "/orders"), ("GET", f"/orders/{'0' * 32}")):
        resp = await api.request(method, path, headers=headers, json=MARKET)
        assert await _unauthorized(resp)


async def test_a_known_id_with_the_wrong_secret_is_401(make_api: ApiFactory, db_url: str) -> None:
    key = await make_key(db_url)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    api = await make_api(headers=bearer(forged))
    assert await _unauthorized(await api.get("/orders"))


async def test_two_authorization_headers_are_401(make_api: ApiFactory, db_url: str) -> None:
    key = await make_key(db_url)
    api = await make_api(headers=NO_KEY)
    resp = await api.get("/orders", headers=[("Authorization", f"Bearer {key}")] * 2)
    assert await _unauthorized(resp)


async def test_a_read_key_reads_and_may_not_write(make_api: ApiFactory, db_url: str) -> None:
    trader = await make_api()
    order = await (await trader.post("/orders", json=MARKET)).json()
    reader = await make_api(headers=bearer(await make_key(db_url, "test", Scope.READ)))
    assert (await reader.get(f"/orders/{order['id']}")).status == 200
    refused = await reader.post("/orders", json=MARKET)
    assert refused.status == 403
    assert (await refused.json())["message"]


async def test_an_account_sees_only_its_own_orders(
    make_api: ApiFactory, db_url: str, db: asyncpg.Connection
) -> None:
    alice = await make_api(headers=bearer(await make_key(db_url, "alice")))
    bob = await make_api(headers=bearer(await make_key(db_url, "bob")))
    order = await (await alice.post("/orders", json=MARKET)).json()
    for path in (f"/orders/{order['id']}", f"/orders/{order['id']}/events"):
        mine, theirs = await alice.get(path), await bob.get(path)
        assert mine.status == 200
        assert theirs.status == 404  # exactly as an unknown id
        unknown = await bob.get(path.replace(order["id"], "6f1c6a56-6f64-4cf1-9b8e-3a3c6c1f0e59"))
        assert await theirs.json() == await unknown.json()
    assert [o["id"] for o in (await (await alice.get("/orders")).json())["orders"]] == [order["id"]]
    assert (await (await bob.get("/orders")).json())["orders"] == []


async def test_idempotency_keys_belong_to_the_account(
    make_api: ApiFactory, db_url: str, db: asyncpg.Connection
) -> None:
    alice = await make_api(headers=bearer(await make_key(db_url, "alice")))
    bob = await make_api(headers=bearer(await make_key(db_url, "bob")))
    same = {"Idempotency-Key": "client-order-1"}
    first = await (await alice.post("/orders", json=MARKET, headers=same)).json()
    other = await bob.post("/orders", json={**MARKET, "quantity": 3}, headers=same)
    assert other.status == 201  # not 422: bob's key space is his own
    assert (await other.json())["id"] != first["id"]
    assert await db.fetchval("SELECT count(*) FROM orders") == 2


async def test_health_metrics_and_docs_need_no_key(make_api: ApiFactory) -> None:
    api = await make_api(headers=NO_KEY)
    for path in ("/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs"):
        assert (await api.get(path)).status == 200, path


def _keys_cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "orders_ops.keys", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_orders_keys_creates_lists_and_revokes(
    make_api: ApiFactory, db_url: str, db: asyncpg.Connection
) -> None:
    made = _keys_cli(db_url, "create", "--account", "carol", "--scope", "trade")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]  # alone on the last line
    match = KEY_RE.match(key)
    assert match is not None
    key_id, secret = match[1], match[2]
    # Only a hash is stored: the secret is in no column of the row.
    row = await db.fetchrow("SELECT * FROM api_keys WHERE id = $1", key_id)
    assert row is not None
    assert all(secret not in str(value) for value in row.values())
    listed = _keys_cli(db_url, "list")
    assert key_id in listed.stdout
    assert "carol" in listed.stdout
    assert secret not in listed.stdout

    api = await make_api(headers=bearer(key), key_cache_s=0)
    assert (await api.post("/orders", json=MARKET)).status == 201
    revoked = _keys_cli(db_url, "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in await _unauthorized(await api.get("/orders"))
    assert _keys_cli(db_url, "revoke", "000000000000").returncode == 1
    assert _keys_cli(db_url, "create", "--account", "bad name!").returncode != 0


@pytest.fixture
async def proxy(db_url: str) -> AsyncIterator[DbProxy]:
    running = DbProxy(db_url)
    await running.start()
    yield running
    await running.cut()


PLACEMENT_FAILED = {"message": "Internal server error while placing the order"}


async def test_a_database_outage_while_creating_is_the_documented_500_not_503(
    make_api: ApiFactory, proxy: DbProxy
) -> None:
    """SPEC §2: when the database fails while an order is created the answer is the one
    documented 500, also when it fails in checking the key (found by the chaos suite: 503s)."""
    warm = await make_api(database_url=proxy.dsn, key_cache_s=0)  # its key entry is stale at once
    cold = await make_api(database_url=proxy.dsn)  # its key was never checked
    assert (await warm.post("/orders", json=MARKET)).status == 201
    await proxy.cut()
    for api in (warm, cold):
        resp = await api.post("/orders", json=MARKET)
        assert resp.status == 500
        assert await resp.json() == PLACEMENT_FAILED
