"""deploy/ checked by the real tools: promtool (config, rules, rule unit tests), amtool, and a real
Prometheus that scrapes the running services and evaluates every expression of the alert rules
and of the Grafana dashboard. Locally these skip when the tools are missing; in CI they fail."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import LIMIT, MARKET, fast_settings
from tests.procs import wait_http
from tests.sim import ROOT, SimProcess, free_port, wait_exit
from tests.tracker_procs import MONITORED, Running

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "orders.json"
THRESHOLD = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*[0-9.e+-]+\s*$")
WAIT_S = 90.0


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_the_scrape_config() -> None:
    _run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))


def test_promtool_checks_the_rules() -> None:
    _run(tool("promtool"), "check", "rules", str(RULES))


def test_promtool_unit_tests_every_alert() -> None:
    tests = DEPLOY / "prometheus" / "rules_test.yml"
    alerts = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M))
    tested = set(re.findall(r"^\s*alertname: (\w+)", tests.read_text(), re.M))
    assert alerts
    assert alerts == tested
    _run(tool("promtool"), "test", "rules", str(tests))


def test_amtool_checks_the_alertmanager_config() -> None:
    _run(tool("amtool"), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))


async def expressions(http: aiohttp.ClientSession, prom: str) -> list[str]:
    """Every PromQL expression: dashboard targets, recording rules as Prometheus loaded them from
    deploy/, and each alert's signal (its expression without the final threshold, which holds
    data whether or not the alert fires)."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    async with http.get(f"{prom}/api/v1/rules") as resp:
        groups = (await resp.json())["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["name"] for r in rules if r["type"] == "alerting"} >= {"OrdersFailed", "TargetDown"}
    for rule in rules:
        query = rule["query"]
        found.append(THRESHOLD.sub("", query) if rule["type"] == "alerting" else query)
    return [e.replace("$__rate_interval", "1m") for e in found]


@pytest.fixture
async def services(db_url: str, exchange: SimProcess) -> AsyncIterator[dict[str, Running]]:
    settings = fast_settings(db_url, exchange.url, tracker_poll_interval_s=0.2)
    running: dict[str, Running] = {}
    try:
        for job, start in MONITORED:
            running[job] = await start(settings)
        yield running
    finally:
        for service in running.values():
            await service.stop()


@pytest.fixture
async def prometheus(services: dict[str, Running], tmp_path: Path) -> AsyncIterator[str]:
    binary = tool("prometheus")
    jobs = [{"job_name": job, "static_configs": [{"targets": [s.url.removeprefix("http://")]}]}
            for job, s in services.items()]  # fmt: skip
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": jobs,
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_http(f"http://127.0.0.1:{port}/-/ready", proc, timeout_s=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        if await wait_exit(proc, 15) is None:
            proc.kill()
            await wait_exit(proc, 15)


async def _query(http: aiohttp.ClientSession, prom: str, expr: str) -> list[Any]:
    async with http.get(f"{prom}/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body["status"] == "success", (expr, body)
    result: list[Any] = body["data"]["result"]
    return result


async def _until(http: aiohttp.ClientSession, prom: str, expr: str, deadline: float) -> None:
    while not await _query(http, prom, expr):
        assert time.monotonic() < deadline, f"no data for: {expr}"
        await asyncio.sleep(0.5)


async def _firing(http: aiohttp.ClientSession, prom: str) -> set[str]:
    async with http.get(f"{prom}/api/v1/alerts") as resp:
        alerts = (await resp.json())["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


async def _post(http: aiohttp.ClientSession, api: Running, count: int) -> None:
    for i in range(count):
        body = MARKET if i % 2 else LIMIT
        async with http.post(f"{api.url}/orders", json=body, headers=api.headers) as resp:
            assert resp.status == 201


async def test_real_prometheus_sees_every_expression_and_fires_orders_failed(
    prometheus: str, services: dict[str, Running], exchange: SimProcess
) -> None:
    deadline = time.monotonic() + WAIT_S
    async with aiohttp.ClientSession() as http:
        # orders_failed_total is scraped at 0 first: the first failure ever is an increase.
        await _until(http, prometheus, 'orders_failed_total{job="tracker"} == 0', deadline)
        await exchange.configure(failure_rate=1.0)
        await _post(http, services["orders-api"], 5)
        await _until(http, prometheus, "orders_failed_total >= 5", deadline)
        await exchange.configure(failure_rate=0.0)
        await _post(http, services["orders-api"], 5)
        while "OrdersFailed" not in await _firing(http, prometheus):
            assert time.monotonic() < deadline, "OrdersFailed never fired"
            await asyncio.sleep(0.5)
        for expr in await expressions(http, prometheus):
            await _until(http, prometheus, expr, deadline)
