"""A real PgBouncer for the tests (chaos.bouncer: Debian's `pgbouncer` in transaction mode on a
free loopback port), and what a test does when it is not installed."""

from __future__ import annotations

import os

import pytest

from chaos.bouncer import PgBouncer, installed

__all__ = ["PgBouncer", "require_pgbouncer"]


def require_pgbouncer() -> None:
    """Skip without PgBouncer; in CI (CI=true) fail instead: .ci/run installs it."""
    if installed():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    pytest.skip("pgbouncer is not installed")
