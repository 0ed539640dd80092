"""`make bench`: every scenario of issue 14 in one run, on loopback, each beside its reference.

  1. peak: wrk (closed loop, 64 connections) POSTs orders at an instant exchange, next to the
     database's own limit (one INSERT per order, same concurrency: bench.post_orders.baseline);
  2. open loop at 50 % and 90 % of that peak (bench.openloop: latency from each request's due
     time, so free of coordinated omission): p50, p99, p99.9, errors;
  3. slow exchange: 500 ms, 10 % failures, 512 connections: orders/s against the bound
     512 / 0.5 s, p99, the share answered SUCCESS;
  4. backlog: the peak again with BACKLOG orders waiting for their retries;
  5. memory: RSS of each process, sampled through the whole run;
  6. the status stream: listener ingest next to COPY (bench.stream_ingest).
Each scenario reports each process's CPU share. Writes bench/results/latest.md and, when
matplotlib is installed (`make bench` installs it), PNG plots beside it.

    python -m bench.run [--workers N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from bench import openloop, post_orders, stream_ingest
from bench.common import fresh_database
from orders_core.db import database_url
from tests.helpers import SystemSettings
from tests.procs import ApiProcess
from tests.sim import SimProcess

RESULTS = Path(__file__).parent / "results"
LUA = Path(__file__).parent / "post_order.lua"
BENCH_DB = "orders_bench_run"
BACKLOG = 100_000
BODY = json.dumps(post_orders.ORDER).encode()


@dataclass
class Durations:
    peak_s: int = 20
    open_s: int = 60
    slow_s: int = 30
    baseline_orders: int = 20_000
    stream_events: int = 50_000


QUICK = Durations(peak_s=5, open_s=10, slow_s=10, baseline_orders=3_000, stream_events=10_000)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    rss: list[tuple[float, str, float]] = field(default_factory=list)  # (t, process, MiB)
    open_loop: list[openloop.Result] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)


class Cpu:
    """CPU seconds of the run's processes over one scenario: their share of the machine."""

    def __init__(self, processes: dict[str, Callable[[], list[psutil.Process]]]) -> None:
        self._processes = processes
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def _now(self) -> dict[str, float]:
        machine = psutil.cpu_times()
        # The whole machine too: it counts what processes that ended meanwhile used.
        seconds: dict[str, float] = {"whole machine": sum(machine) - machine.idle - machine.iowait}
        for name, find in self._processes.items():
            total = 0.0
            for proc in find():
                try:
                    times = proc.cpu_times()
                    total += times.user + times.system
                except psutil.Error:
                    pass
            seconds[name] = total
        return seconds

    def __enter__(self) -> Cpu:
        self._start, self._t0 = self._now(), time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.elapsed = time.perf_counter() - self._t0
        end = self._now()
        self.shares = {n: (end[n] - self._start.get(n, 0.0)) / self.elapsed for n in end}

    def line(self) -> str:
        cores = psutil.cpu_count() or 1
        parts = [f"{name} {share:.2f}" for name, share in self.shares.items()]
        return f"CPU (cores busy, of {cores}): " + ", ".join(parts)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def _by_name(name: str) -> Callable[[], list[psutil.Process]]:
    def find() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["name"]) if p.info["name"] == name]

    return find


def wrk(url: str, key: str, connections: int, seconds: int) -> dict[str, Any]:
    """One closed-loop wrk run against POST /orders; its WRK_JSON line."""
    threads = min(2, connections)
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(LUA), f"{url}/orders",
    ]  # fmt: skip
    out = subprocess.run(
        command, env={**os.environ, "ORDERS_KEY": key}, capture_output=True, text=True, check=True
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


async def _sample_rss(report: Report, procs: dict[str, Callable[[], list[psutil.Process]]]) -> None:
    start = time.perf_counter()
    while True:
        for name, find in procs.items():
            mib = 0.0
            for proc in find():
                with contextlib.suppress(psutil.Error):
                    mib += proc.memory_info().rss / 2**20
            report.rss.append((time.perf_counter() - start, name, mib))
        await asyncio.sleep(10)


async def _backlog(dsn: str, count: int) -> None:
    """`count` orders IN PROGRESS whose next retry is an hour away (of another account)."""
    conn = await asyncpg.connect(dsn)
    try:
        account = await conn.fetchval("INSERT INTO accounts (name) VALUES ('backlog') RETURNING id")
        await conn.execute(
            "INSERT INTO orders (id, type, side, instrument, quantity, attempts, last_error, "
            "next_attempt_at, account_id) SELECT gen_random_uuid(), 'market', 'buy', "
            "'US0378331005', 1, 1, 'exchange 503', now() + interval '1 hour', $2 "
            "FROM generate_series(1, $1)",
            count,
            account,
        )
        await conn.execute("ANALYZE orders")
    finally:
        await conn.close()


def _ms(us: float) -> str:
    return f"{us / 1000:.1f} ms"


async def scenarios(report: Report, durations: Durations, workers: int) -> dict[str, Any]:
    server = database_url(SystemSettings())
    figures: dict[str, Any] = {}
    say = report.say
    postgres = _by_name("postgres")
    dsn = await fresh_database(server, BENCH_DB)
    with Cpu({"postgres": postgres}) as cpu:
        pg_rate = await post_orders.baseline(dsn, durations.baseline_orders, 64)
    say(f"Database limit, one INSERT per order, 64 at a time: {pg_rate:,.0f} orders/s")
    say(f"  {cpu.line()}")
    dsn = await fresh_database(server, BENCH_DB)
    env = {"EXCHANGE_SIM_LATENCY_MS": "0", "EXCHANGE_SIM_FAILURE_RATE": "0",
           "EXCHANGE_SIM_LIFECYCLE": "false"}  # fmt: skip
    async with SimProcess.start_async(env) as sim:
        settings = SystemSettings(
            database_url=dsn, exchange_url=sim.url, log_level="WARNING",
            rate_limit_per_s=1e9, rate_limit_burst=10**9,
        )  # fmt: skip
        async with await ApiProcess.start(settings, ORDERS_API_WORKERS=str(workers)) as api:
            key = api.headers["Authorization"].split(" ", 1)[1]
            procs: dict[str, Callable[[], list[psutil.Process]]] = {
                "orders-api": lambda: _tree(api.proc.pid),
                "exchange-sim": lambda: _tree(sim.proc.pid),
                "postgres": postgres,
                "load generator": lambda: [psutil.Process(), *_by_name("wrk")()],
            }
            sampler = asyncio.create_task(
                _sample_rss(report, {k: procs[k] for k in ("orders-api", "exchange-sim")})
            )
            try:
                wrk(api.url, key, 64, 3)  # warm-up
                with Cpu(procs) as cpu:
                    peak = wrk(api.url, key, 64, durations.peak_s)
                figures["peak"] = peak["rate"]
                figures["ratio"] = peak["rate"] / pg_rate
                say(f"\n1. Peak, instant exchange, 64 connections (wrk, closed loop), {workers} "
                    f"API worker(s): {peak['rate']:,.0f} orders/s; "
                    f"API / database limit = {figures['ratio']:.2f}")  # fmt: skip
                say(f"  latency p50 {_ms(peak['p50_us'])}, p99 {_ms(peak['p99_us'])}, "
                    f"errors {peak['errors']}, answers {peak['statuses']}")  # fmt: skip
                say(f"  {cpu.line()}")

                say("\n2. Open loop (each request due at a fixed instant; latency from then):")
                for share in (0.5, 0.9):
                    rate = peak["rate"] * share
                    with Cpu(procs) as cpu:
                        result = await openloop.run(
                            f"{api.url}/orders", BODY, {"Authorization": f"Bearer {key}"},
                            rate, durations.open_s,
                        )  # fmt: skip
                    report.open_loop.append(result)
                    figures[f"open{int(share * 100)}_p99_ms"] = result.percentile(99) * 1e3
                    say(f"  {share:.0%} of peak ({rate:,.0f}/s for {durations.open_s} s): "
                        f"p50 {result.percentile(50) * 1e3:.1f} ms, "
                        f"p99 {result.percentile(99) * 1e3:.1f} ms, "
                        f"p99.9 {result.percentile(99.9) * 1e3:.1f} ms, errors {result.errors}, "
                        f"answers {dict(result.statuses)}, generator lag "
                        f"{result.late_s * 1e3:.1f} ms")  # fmt: skip
                    say(f"    {cpu.line()}")

                await sim.configure(latency_ms=500, failure_rate=0.1)
                bound = 512 / 0.5
                with Cpu(procs) as cpu:
                    slow = wrk(api.url, key, 512, durations.slow_s)
                share_ok = slow["success"] / max(slow["requests"], 1)
                figures["slow_ratio"] = slow["rate"] / bound
                say(f"\n3. Slow exchange (500 ms, 10 % failures), 512 connections: "
                    f"{slow['rate']:,.0f} orders/s = {figures['slow_ratio']:.2f} of the bound "
                    f"{bound:,.0f}/s; p99 {_ms(slow['p99_us'])}; answered SUCCESS "
                    f"{share_ok:.0%}; errors {slow['errors']}")  # fmt: skip
                say(f"  {cpu.line()}")
                await sim.configure(latency_ms=0, failure_rate=0.0)

                await _backlog(dsn, BACKLOG)
                with Cpu(procs) as cpu:
                    loaded = wrk(api.url, key, 64, durations.peak_s)
                figures["backlog_ratio"] = loaded["rate"] / peak["rate"]
                say(f"\n4. Backlog of {BACKLOG:,} orders waiting for retries: "
                    f"{loaded['rate']:,.0f} orders/s = {figures['backlog_ratio']:.2f} of the "
                    f"peak without it; p99 {_ms(loaded['p99_us'])}")  # fmt: skip
                say(f"  {cpu.line()}")
            finally:
                sampler.cancel()
    say("\n5. Memory (RSS, MiB) at start and at the end:")
    for name in ("orders-api", "exchange-sim"):
        samples = [mib for _, n, mib in report.rss if n == name]
        if samples:
            say(f"  {name}: {samples[0]:.0f} -> {samples[-1]:.0f} "
                f"(max {max(samples):.0f}, {len(samples)} samples over the run)")  # fmt: skip
    listener_rate, copy_rate = await stream_ingest.main(durations.stream_events, 500)
    figures["stream_ratio"] = listener_rate / copy_rate
    ratio = figures["stream_ratio"]
    say(f"\n6. Status stream: {listener_rate:,.0f} events/s through the listener (with the "
        f"live updates' log) against {copy_rate:,.0f}/s COPY: {ratio:.2f}")  # fmt: skip
    return figures


def plots(report: Report) -> list[str]:
    """PNG plots, when matplotlib is there: latency distributions and latency over time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for result in report.open_loop:
        ordered = sorted(result.latencies_s)
        if ordered:
            ys = [i / len(ordered) for i in range(len(ordered))]
            ax.plot([v * 1e3 for v in ordered], ys, label=f"{result.rate:,.0f}/s")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, from due time)")
    ax.set_ylabel("share of requests")
    ax.set_title("POST /orders, open loop: latency distribution")
    ax.legend()
    fig.savefig(RESULTS / "latency.png", dpi=100)
    made.append("latency.png")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for result in report.open_loop:
        buckets: dict[int, list[float]] = {}
        for due, latency in result.timeline:
            buckets.setdefault(int(due), []).append(latency)
        xs = sorted(buckets)
        p99 = [sorted(buckets[x])[int(0.99 * (len(buckets[x]) - 1))] * 1e3 for x in xs]
        rate = [len(buckets[x]) for x in xs]
        ax.plot(xs, p99, label=f"p99 at {result.rate:,.0f}/s")
        ax.plot(xs, rate, linestyle="--", label=f"answered/s at {result.rate:,.0f}/s")
    ax.set_xlabel("seconds into the scenario")
    ax.set_yscale("log")
    ax.set_title("POST /orders, open loop: p99 (ms) and throughput over time")
    ax.legend()
    fig.savefig(RESULTS / "over_time.png", dpi=100)
    made.append("over_time.png")
    return made


async def main(workers: int, durations: Durations) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk; `make bench` does)")
    report = Report()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    figures = await scenarios(report, durations, workers)
    RESULTS.mkdir(exist_ok=True)
    made = plots(report)
    text = "\n".join([
        f"# Benchmarks, {started}", "",
        f"`python -m bench.run --workers {workers}` on {psutil.cpu_count()} cores "
        "(PostgreSQL, API, exchange-sim and the load generator share them).", "", "```",
        *report.lines, "```", "",
        *(f"![{m}]({m})" for m in made), "",
        "Figures: " + json.dumps({k: round(v, 3) for k, v in figures.items()}), "",
    ])  # fmt: skip
    (RESULTS / "latest.md").write_text(text)
    print(f"\nwrote {RESULTS / 'latest.md'}" + (f" and {', '.join(made)}" if made else ""))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="ORDERS_API_WORKERS")
    parser.add_argument("--quick", action="store_true", help="short runs, to try the command")
    args = parser.parse_args()
    asyncio.run(main(args.workers, QUICK if args.quick else Durations()))
