"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sim import SimProcess

pytest_plugins = ["tests.pg", "tests.api_fixtures"]

# The exchange the suite talks to: no latency, no random failures, repeatable decisions.
SIM_ENV = {
    "EXCHANGE_SIM_LATENCY_MS": "0",
    "EXCHANGE_SIM_FAILURE_RATE": "0",
    "EXCHANGE_SIM_SEED": "1",
}


@pytest.fixture(scope="session")
def sim_process() -> Iterator[SimProcess]:
    """One stand-in exchange process for the session (sync: no event loop outlives a test)."""
    with SimProcess.start(SIM_ENV) as sim:
        yield sim


@pytest.fixture
async def exchange(sim_process: SimProcess) -> SimProcess:
    """The session's exchange, restarted if a test killed it, reset to its starting state."""
    if sim_process.proc.poll() is not None:
        await sim_process.restart_async()
    await sim_process.reset()
    return sim_process
