"""Reading docker-compose.yml, the Dockerfile and .dockerignore the way Docker would, enough for
tests/test_containers.py to check them against the code and to run the compose layout without
Docker."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exchange_sim.config import SimSettings
from tests.helpers import SystemSettings
from tests.sim import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

# Each long-running service (its console script) -> the variable that sets its listen port.
PORT_VARIABLE = {
    "orders-api": "ORDERS_API_PORT",
    "exchange-listener": "LISTENER_PORT",
    "tracker": "TRACKER_PORT",
    "exchange-sim": "EXCHANGE_SIM_PORT",
}

_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}"
)


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    return scripts


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}` and `$$`."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name"), match.group("op"), match.group("default")
        if op == ":-":
            return variables.get(name) or default
        if op == "-":
            return variables.get(name, default)
        return variables.get(name, "")

    return _VARIABLE.sub(one, value)


def environment(service: dict[str, Any], variables: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment (mapping or list form), interpolated with `variables`."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): interpolate(str(v), variables or {}) for k, v in raw.items()}


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run our image (built from ./Dockerfile)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    assert isinstance(cmd, list), f"exec form (a list) expected, got {cmd!r}"
    return [str(part) for part in cmd]


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
    """(host part, container port) of each short-syntax `ports` entry."""
    found = []
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        found.append((host, int(container.split("/")[0])))
    return found


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of each bind mount (`./x:/y[:ro]`)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith(("./", "/")):
            mounts[target] = (ROOT / source).resolve()
    return mounts


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


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` (relative, no trailing slash) out of the build context;
    the last matching pattern wins, `!` re-includes, like Docker."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        anywhere = pattern.startswith("**/")
        pattern = pattern.removeprefix("**/")
        for prefix in prefixes:
            name = prefix.rsplit("/", 1)[-1] if anywhere else prefix
            if fnmatch.fnmatchcase(name, pattern):
                result = not negate
                break
    return result
