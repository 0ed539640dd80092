"""The system under test, on loopback: PostgreSQL (ours, behind a proxy of ours), exchange-sim
(behind two proxies of ours: one for the API, one for the stream), API instances, listeners and a
tracker, all real processes. `async with Stack(...)` starts it all and always stops it all."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Self

import aiohttp

from chaos.launch import spawn, wait_exit
from chaos.pg import PgCluster
from chaos.procs import Service, python_module, settings_env
from chaos.profiles import LISTENER, TRACKER, Profile
from chaos.proxy import Proxy

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)


class Stack:
    def __init__(
        self, profile: Profile, seed: int, run_dir: Path, planted: str | None = None
    ) -> None:
        self.profile = profile
        self.seed = seed
        self.run_dir = run_dir
        self.planted = planted
        self.pg = PgCluster(run_dir / "pg")
        self.db_proxy = Proxy("db", self.pg.port)
        self.sim: Service | None = None
        self.venue_link: Proxy | None = None
        self.stream_link: Proxy | None = None
        self.apis: list[Service] = []
        self.listeners: list[Service] = []
        self.tracker: Service | None = None
        self._http: aiohttp.ClientSession | None = None
        self.api_key: str | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None
        return self._http

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        await self.close()

    async def _start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=HTTP_TIMEOUT)
        await self.pg.init()
        await self.pg.start()
        await self._migrate()
        self.api_key = await self._api_key()
        await self.db_proxy.start()
        base = dict(os.environ)
        sim_env = settings_env(base, {f"exchange_sim_{k}": v for k, v in self.sim_knobs().items()})
        sim_env |= {"EXCHANGE_SIM_CONTROL": "true", "BIND_HOST": "127.0.0.1"}
        self.sim = Service(
            "exchange-sim",
            python_module("exchange_sim"),
            sim_env,
            "EXCHANGE_SIM_PORT",
            "/health",
            self.run_dir,
        )
        await self.sim.start()
        self.venue_link = Proxy("venue", self.sim.port, keep_venue_side=True)
        self.stream_link = Proxy("stream", self.sim.port)
        self.venue_link.answer_delay_s = self.profile.answer_delay_s
        await self.venue_link.start()
        await self.stream_link.start()
        shared = {"database_url": self.db_proxy.dsn(), "bind_host": "127.0.0.1"}
        api_env = settings_env(base, shared | dict(self.profile.api))
        api_env["EXCHANGE_URL"] = self.venue_link.url
        argv = (
            python_module("orders_api")
            if self.planted is None
            else python_module("chaos.planted", self.planted)
        )
        for i in range(self.profile.apis):
            self.apis.append(
                Service(f"api{i}", argv, api_env, "ORDERS_API_PORT", "/health/ready", self.run_dir)
            )
        listener_env = settings_env(base, shared | dict(LISTENER))
        listener_env["EXCHANGE_URL"] = self.stream_link.url
        for i in range(self.profile.listeners):
            self.listeners.append(
                Service(
                    f"listener{i}",
                    python_module("exchange_listener"),
                    listener_env,
                    "LISTENER_PORT",
                    "/health/ready",
                    self.run_dir,
                )
            )
        tracker_env = settings_env(base, shared | dict(TRACKER))
        self.tracker = Service(
            "tracker",
            python_module("tracker"),
            tracker_env,
            "TRACKER_PORT",
            "/health/ready",
            self.run_dir,
        )
        await asyncio.gather(*(s.start() for s in self.services() if s is not self.sim))

    async def _migrate(self) -> None:
        env = settings_env(dict(os.environ), {"database_url": self.pg.dsn})
        with (self.run_dir / "migrate.log").open("ab") as log:
            proc = spawn(_migrate_command(), env=env, log=log)
            code = await wait_exit(proc, 60)
        if code != 0:
            raise RuntimeError(f"orders-migrate failed ({code}): see {self.run_dir}/migrate.log")

    async def _api_key(self) -> str | None:
        """A trading key for the workload (`orders-keys create`), when the API asks for keys."""
        if importlib.util.find_spec("orders_ops.keys") is None:
            return None
        env = settings_env(dict(os.environ), {"database_url": self.pg.dsn})
        out = self.run_dir / "keys.out"
        with out.open("wb") as log:
            code = await wait_exit(spawn(_keys_command(), env=env, log=log), 60)
        lines = out.read_text().strip().splitlines()
        out.unlink()
        if code != 0 or not lines:
            raise RuntimeError(f"orders-keys create failed ({code}): {lines[-3:]}")
        return lines[-1].strip()

    def sim_knobs(self) -> dict[str, Any]:
        return dict(self.profile.sim) | {"seed": self.seed}

    def services(self) -> list[Service]:
        others = [s for s in (self.sim, self.tracker) if s is not None]
        return [*others, *self.apis, *self.listeners]

    async def sim_call(self, method: str, path: str, body: object = None) -> Any:
        """A call to the exchange directly (not through our proxies)."""
        assert self.sim is not None
        async with self.http.request(method, self.sim.url + path, json=body) as resp:
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
            return None if resp.status == 204 else await resp.json()

    async def configure_sim(self, **knobs: Any) -> None:
        await self.sim_call("POST", "/_sim/config", knobs)

    async def heal(self) -> list[str]:
        """Everything back to normal: the database up, proxies open, the exchange's knobs as at
        the start, every process running. What had to be done."""
        done = []
        if not self.pg.running:
            await self.pg.start()
            done.append("database started")
        for proxy in (self.db_proxy, self.venue_link, self.stream_link):
            if proxy is not None:
                proxy.thaw()
                proxy.answer_delay_s = 0.0
        if self.venue_link is not None:
            self.venue_link.answer_delay_s = self.profile.answer_delay_s
        await self.configure_sim(**{k: v for k, v in self.sim_knobs().items() if k != "seed"})
        for service in self.services():
            if not service.running:
                await service.start()
                done.append(f"{service.name} started")
        return done

    async def close(self) -> None:
        """Stop everything we started, whatever state it is in."""
        for service in [*self.apis, *self.listeners, self.tracker, self.sim]:
            if service is not None:
                with contextlib.suppress(Exception):
                    await service.terminate()
                service.close()
        for proxy in (self.db_proxy, self.venue_link, self.stream_link):
            if proxy is not None:
                with contextlib.suppress(Exception):
                    await proxy.close()
        with contextlib.suppress(Exception):
            await self.pg.stop()
        self.pg.close()
        if self._http is not None:
            await self._http.close()


def _keys_command() -> list[str]:
    create = ["create", "--account", "chaos", "--scope", "trade"]
    return [sys.executable, "-c", "from orders_ops.keys import main; main()", *create]


def _migrate_command() -> list[str]:
    script = Path(sys.executable).parent / "orders-migrate"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from orders_core.migrate import main; main()"]
