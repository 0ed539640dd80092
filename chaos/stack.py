"""The system under test, on loopback: PostgreSQL (ours, behind a proxy of ours), exchange-sim
(behind two proxies of ours: one for the API, one for the stream), API instances, listeners and
trackers, all real processes; with the profile's `bouncer`, a real PgBouncer in transaction mode
between the services and the database proxy. `async with Stack(...)` starts it all and always
stops it all."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import aiohttp
import psutil

from chaos.bouncer import PgBouncer
from chaos.launch import spawn, wait_exit
from chaos.pg import PgCluster
from chaos.planted import planted_in
from chaos.procs import Service, python_module, settings_env
from chaos.profiles import LISTENER, TRACKER, Profile
from chaos.proxy import Proxy

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
# Server connections of the bouncer's pool: far fewer than the services' clients, as in production.
BOUNCER_POOL_SIZE = 20
SUPERVISE_EVERY_S = 0.2


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
        self.bouncer: PgBouncer | None = None
        if profile.bouncer:
            self.bouncer = PgBouncer(self.db_proxy.dsn(), BOUNCER_POOL_SIZE, run_dir / "pgbouncer")
        self.sim: Service | None = None
        self.venue_link: Proxy | None = None
        self.stream_link: Proxy | None = None
        self.apis: list[Service] = []
        self.listeners: list[Service] = []
        self.trackers: list[Service] = []
        # PgBouncer is restarted when it ends by itself, as its supervisor would (compose:
        # `restart: unless-stopped`): 1.18 does, now and then, on a FATAL of its own (upstream
        # issue #801: a cancel request whose client left first). Each time is noted here, as
        # (time.monotonic(), what it said), and reported; a fault that stops it holds it down.
        self.bouncer_ended: list[tuple[float, str]] = []
        self.bouncer_held = False
        self._supervisor: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        # Sessions traced to their process: PostgreSQL's client port -> ours, whose, its process.
        self._owners: dict[int, tuple[int, str, subprocess.Popen[bytes]]] = {}
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
        if self.bouncer is not None:
            await self.bouncer.start()
            self._supervisor = asyncio.create_task(self._supervise(self.bouncer))
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
        if self.bouncer is not None:  # statements through the pooler, sessions past it
            shared |= {
                "database_url": self.bouncer.dsn(),
                "database_direct_url": self.db_proxy.dsn(),
            }
        api_env = settings_env(base, shared | dict(self.profile.api))
        api_env["EXCHANGE_URL"] = self.venue_link.url
        for i in range(self.profile.apis):
            self.apis.append(
                Service(
                    f"api{i}",
                    self._argv("orders_api"),
                    api_env,
                    "ORDERS_API_PORT",
                    "/health/ready",
                    self.run_dir,
                )
            )
        listener_env = settings_env(base, shared | dict(LISTENER))
        listener_env["EXCHANGE_URL"] = self.stream_link.url
        for i in range(self.profile.listeners):
            self.listeners.append(
                Service(
                    f"listener{i}",
                    self._argv("exchange_listener"),
                    listener_env,
                    "LISTENER_PORT",
                    "/health/ready",
                    self.run_dir,
                )
            )
        tracker_env = settings_env(base, shared | dict(TRACKER))
        for i in range(self.profile.trackers):
            self.trackers.append(
                Service(
                    "tracker" if self.profile.trackers == 1 else f"tracker{i}",
                    self._argv("tracker"),
                    tracker_env,
                    "TRACKER_PORT",
                    "/health/ready",
                    self.run_dir,
                )
            )
        await asyncio.gather(*(s.start() for s in self.services() if s is not self.sim))

    async def _supervise(self, bouncer: PgBouncer) -> None:
        while True:
            await asyncio.sleep(SUPERVISE_EVERY_S)
            if bouncer.running or self.bouncer_held or bouncer.proc is None:
                continue
            said = bouncer.last_fatal() or "no FATAL line"
            self.bouncer_ended.append((time.monotonic(), f"exit {bouncer.proc.returncode}: {said}"))
            with contextlib.suppress(RuntimeError):
                await bouncer.start()

    def _argv(self, package: str) -> list[str]:
        """How a service runs: its own main, or with the run's planted bug (chaos.planted)."""
        if self.planted is not None and package in planted_in(self.planted):
            return python_module("chaos.planted", self.planted, package)
        return python_module(package)

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
        others = [self.sim] if self.sim is not None else []
        return [*others, *self.trackers, *self.apis, *self.listeners]

    def owner(self, db_client_port: int) -> str | None:
        """Whose database session this is, by the port PostgreSQL sees as its client's (every
        service reaches it through the database proxy): the name of a service, "pgbouncer" (a
        server connection of its pool), or None (nothing of ours, or a process that just died)."""
        port = self.db_proxy.client_port(db_client_port)
        if port is None:
            return None
        known = self._owners.get(db_client_port)
        if known is not None and known[0] == port and known[2].poll() is None:
            return known[1]
        candidates = [(s.name, s.proc) for s in self.services()]
        if self.bouncer is not None:
            candidates.append(("pgbouncer", self.bouncer.proc))
        for name, proc in candidates:
            if proc is None or proc.poll() is not None:
                continue
            try:
                conns = psutil.Process(proc.pid).net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(c.laddr and c.laddr.port == port for c in conns):
                self._owners[db_client_port] = (port, name, proc)
                return name
        return None

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
        if self.bouncer is not None and not self.bouncer.running:
            await self.bouncer.start()
            done.append("pgbouncer started")
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
        for service in [*self.apis, *self.listeners, *self.trackers, self.sim]:
            if service is not None:
                with contextlib.suppress(Exception):
                    await service.terminate()
                service.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self.bouncer is not None:
            with contextlib.suppress(Exception):
                await self.bouncer.halt()
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
