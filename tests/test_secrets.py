"""No secret reaches a log line or a response (SPEC §7, issue 10): DSN passwords in any position,
API keys in use, good or bad. Every process of a run made with them is read back in full."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from orders_core.db import mask_dsn
from tests.helpers import MARKET, bearer, fast_settings, make_key
from tests.procs import ApiProcess, ListenerProcess, TrackerProcess
from tests.sim import SimProcess

PASSWORD = "Pw-7c1e9b44-d0ff-secret"  # noqa: S105 (a marker to search for, not a secret)
QUERY_PASSWORD = "Qp-2a6f01c3-e77a-secret"  # noqa: S105


def with_passwords(dsn: str) -> str:
    """The DSN with a password in its user part and another as a query parameter (the test
    server trusts local connections, so neither is checked, but both are in every setting)."""
    parts = urlsplit(dsn)
    user_part, at, host_part = parts.netloc.rpartition("@")
    user = user_part.split(":", 1)[0] if at else "postgres"
    query = "&".join(q for q in (parts.query, f"password={QUERY_PASSWORD}") if q)
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host_part}", query=query))


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:{p}@h:5432/db?sslmode=require&password={q}",
        "postgresql://u:{p}@[::1]/db?PassWord={q}&x=1",
        "postgresql://u:{p}@h/db",
        "postgresql://u@h/db?sslpassword={q}",
        "postgres://u:{p}{p}@h/db",
    ],
)
def test_mask_dsn_hides_every_password(dsn: str) -> None:
    masked = mask_dsn(dsn.format(p=PASSWORD, q=QUERY_PASSWORD))
    assert PASSWORD not in masked
    assert QUERY_PASSWORD not in masked
    assert "@h" in masked or "@[::1]" in masked


async def test_no_log_line_or_response_carries_a_secret(db_url: str, exchange: SimProcess) -> None:
    dsn = with_passwords(db_url)
    settings = fast_settings(dsn, exchange.url, log_level="DEBUG")
    good = await make_key(db_url, "secrets")
    revoked = await make_key(db_url, "secrets")
    await _cli(dsn, "revoke", revoked.split("_")[1])
    forged = good[:-6] + "AAAAAA"
    secrets = [PASSWORD, QUERY_PASSWORD, good, revoked, forged]
    secrets += [k.rsplit("_", 1)[1] for k in (good, revoked, forged)]
    answers: list[str] = []
    async with (
        await ApiProcess.start(settings) as api,
        await TrackerProcess.start(settings) as tracker,
        await ListenerProcess.start(settings) as listener,
        aiohttp.ClientSession() as http,
    ):
        for key in (good, revoked, forged, "ok_" + "x" * 60, good + " extra"):
            for method, path in (("POST", "/orders"), ("GET", "/orders"), ("GET", "/orders/x")):
                async with http.request(
                    method, f"{api.url}{path}", json=MARKET, headers=bearer(key)
                ) as resp:
                    answers.append(f"{resp.status} {dict(resp.headers)} {await resp.text()}")
        for url in (f"{api.url}/metrics", f"{tracker.url}/metrics", f"{listener.url}/metrics",
                    f"{tracker.url}/failures", f"{api.url}/health/ready"):  # fmt: skip
            async with http.get(url) as resp:
                answers.append(await resp.text())
        outputs = [api.output(), tracker.output(), listener.output()]
    created = await _cli(dsn, "create", "--account", "x")  # shows its own new key, last: fine
    outputs += [await _cli(dsn, "list"), created.rstrip("\n").rsplit("\n", 1)[0]]
    assert any("database pool ready" in out for out in outputs)  # the DSN was logged, masked
    for text in outputs + answers:
        for secret in secrets:
            assert secret not in text, f"a secret in: {text[:300]}"


async def _cli(dsn: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "orders_ops.keys", *args],
        env={**os.environ, "DATABASE_URL": dsn, "LOG_LEVEL": "DEBUG"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr
