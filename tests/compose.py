"""docker-compose.yml as docker compose resolves it, the Dockerfile, and the build context
.dockerignore leaves, for tests/test_containers.py to check them against the code and to run the
compose layout without Docker.

What compose decides is asked of compose: `docker-compose config` interpolates the variables,
expands anchors and merges, makes paths absolute and normalises ports and healthchecks. Which
files `.dockerignore` keeps out of the build context is asked of docker-compose's own build code:
docker-py, with which its classic builder (COMPOSE_DOCKER_CLI_BUILD=0) packs the context. The
default BuildKit builder matches with Go's moby/patternmatcher, which needs an engine here; for the
plain names and `**/` patterns of our .dockerignore the two agree. Only the Dockerfile is still
read by our own code: no tool on this machine parses one into instructions (hadolint checks it).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exchange_sim.config import SimSettings
from tests.helpers import SystemSettings
from tests.sim import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"

# Each long-running service (its console script) -> the variable that sets its listen port.
PORT_VARIABLE = {
    "orders-api": "ORDERS_API_PORT",
    "exchange-listener": "LISTENER_PORT",
    "tracker": "TRACKER_PORT",
    "exchange-sim": "EXCHANGE_SIM_PORT",
}


def compose_command() -> list[str] | None:
    """Debian's docker-compose (what .ci/run installs), else the docker CLI's compose plugin."""
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        return [legacy]
    docker = shutil.which("docker")
    if docker is not None:
        plugin = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if plugin.returncode == 0:
            return [docker, "compose"]
    return None


@dataclass(frozen=True)
class Resolved:
    config: dict[str, Any]  # the file as compose resolved it (shared: do not change it)
    warnings: str  # what compose said on stderr


@functools.cache
def compose_config(tool: tuple[str, ...], variables: tuple[tuple[str, str], ...] = ()) -> Resolved:
    """`docker compose config` of docker-compose.yml, with `variables` as the only ones set: not
    this shell's, not an `.env` file's."""
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ} | dict(variables)
    with tempfile.NamedTemporaryFile("w", suffix=".env") as no_env_file:
        done = subprocess.run(
            [*tool, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE),
             "--env-file", no_env_file.name, "config"],
            capture_output=True, text=True, timeout=60, check=False, env=env,
            cwd=tempfile.gettempdir(),
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return Resolved(yaml.safe_load(done.stdout), done.stderr)


def compose_python() -> list[str] | None:
    """The interpreter of docker-compose when it is the Python one (Debian's, v1), which brings
    docker-py; None for the Go plugin or none."""
    path = shutil.which("docker-compose")
    if path is None:
        return None
    first = Path(path).read_bytes()[:256].split(b"\n", 1)[0].decode(errors="replace")
    if not first.startswith("#!") or "python" not in first:
        return None
    return first[2:].split()


# Run by docker-compose's interpreter: .dockerignore read as docker-py's APIClient.build reads it,
# then the files the build context would hold, from the function its tar of the context uses.
_CONTEXT = """
import json, os, sys
from docker.utils.build import exclude_paths
root = sys.argv[1]
exclude = []
if os.path.exists(os.path.join(root, ".dockerignore")):
    with open(os.path.join(root, ".dockerignore")) as f:
        exclude = [x for x in (line.strip() for line in f.read().splitlines())
                   if x != "" and x[0] != "#"]
print(json.dumps(sorted(exclude_paths(root, exclude, dockerfile="Dockerfile"))))
"""


def build_context(python: list[str], root: Path) -> set[str]:
    """Every path (relative, `/`-separated; directories too) of `root` that a build with
    `root` as its context sends to the engine: what its `.dockerignore` leaves in."""
    done = subprocess.run(
        [*python, "-c", _CONTEXT, str(root)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    paths: list[str] = json.loads(done.stdout)
    return set(paths)


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    return scripts


# --- reading what compose resolved -------------------------------------------------------------
# `docker-compose config` (v1) and `docker compose config` (v2) normalise a few things each its
# own way (short or long port and volume syntax, a disabled healthcheck); these read both.


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, as compose resolved it."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run our image (built from ./Dockerfile)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    assert isinstance(cmd, list), f"exec form (a list) expected, got {cmd!r}"
    return [str(part) for part in cmd]


def healthcheck_disabled(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck", {})
    return check.get("disable") is True or check.get("test") == ["NONE"]


def settings_variables() -> set[str]:
    """Every variable the services' `Settings` read."""
    return {name.upper() for name in SystemSettings.model_fields}


def sim_variables() -> set[str]:
    """Every variable exchange-sim's `SimSettings` reads."""
    names = set()
    for name, field in SimSettings.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"EXCHANGE_SIM_{name.upper()}")
    return names


def accepted_variables(script: str) -> set[str]:
    return sim_variables() if script == "exchange-sim" else settings_variables()


def listen_port(service: dict[str, Any]) -> int:
    """The port a long-running app service listens on: its settings, from its environment."""
    script = command(service)[0]
    env = environment(service)
    variable = PORT_VARIABLE[script]
    if script == "exchange-sim":
        default = SimSettings.model_fields["port"].default
    else:
        default = SystemSettings.model_fields[variable.lower()].default
    return int(env.get(variable, default))


def published(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, container port) of each published port."""
    found = []
    for entry in service.get("ports", []):
        if isinstance(entry, Mapping):  # v2: long syntax
            found.append((str(entry.get("host_ip", "")), int(entry["target"])))
            continue
        host, _, container = str(entry).rpartition(":")  # v1: host_ip:published:target/proto
        found.append((host.rpartition(":")[0], int(container.split("/")[0])))
    return found


def _volumes(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume: an absolute host path for a bind mount, else a name."""
    found = []
    for entry in service.get("volumes", []):
        if isinstance(entry, Mapping):  # v2: long syntax
            found.append((str(entry["source"]), str(entry["target"])))
        else:
            source, target = str(entry).split(":")[:2]
            found.append((source, target))
    return found


def named_volumes(service: dict[str, Any]) -> list[str]:
    return [source for source, _ in _volumes(service) if not source.startswith("/")]


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of each bind mount."""
    return {target: Path(source) for source, target in _volumes(service) if source.startswith("/")}


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where a file seen inside the container comes from on the host, if it is bind-mounted."""
    for target, source in bind_mounts(service).items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target) :].lstrip("/")
    return None


# --- Dockerfile --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--\S+\s+)*", "", text)
            if not text.startswith("CMD "):
                return None
            text = text.removeprefix("CMD ").strip()
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return [str(v) for v in value] if isinstance(value, list) else None


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: comments dropped, continuation lines joined."""
    found: list[Instruction] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        found.append(Instruction(keyword.upper(), " ".join(args.split()), start))
    return found


def global_args(parsed: list[Instruction]) -> dict[str, str]:
    """ARGs before the first FROM, with their defaults."""
    args = {}
    for instruction in parsed:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            args[name] = default
    return args


def stages(parsed: list[Instruction]) -> list[Stage]:
    args = global_args(parsed)
    result: list[Stage] = []
    for instruction in parsed:
        if instruction.keyword == "FROM":
            parts = instruction.args.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""
            result.append(Stage(base, name, []))
        elif result:
            result[-1].instructions.append(instruction)
    return result


def env_names(stage: Stage) -> dict[str, str]:
    """Names and values set by a stage's ENV instructions (key=value form)."""
    names = {}
    for instruction in stage.all("ENV"):
        for pair in instruction.args.split():
            key, _, value = pair.partition("=")
            names[key] = value
    return names
