"""`orders-healthcheck [SERVICE]`: exit 0 when the service in this container answers its health URL.

The image's HEALTHCHECK (slim images have no curl). The port comes from the service's own settings
and the path from the table `orders-stack` uses too, so they cannot drift from what it serves.
Without SERVICE it checks the console script that runs as PID 1, the container's command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from orders_core.settings import Settings
from orders_ops.services import BY_NAME

TIMEOUT_S = 3.0
# Wildcard binds are reached on loopback from inside the container.
WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def health_url(service: str, bind_host: str) -> str:
    if service not in BY_NAME:
        raise ValueError(f"unknown service {service!r}; one of {sorted(BY_NAME)}")
    host = "127.0.0.1" if bind_host in WILDCARDS else bind_host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{BY_NAME[service].port}{BY_NAME[service].health}"


def container_command(cmdline: Path = Path("/proc/1/cmdline")) -> str | None:
    """The console script PID 1 runs (`/opt/venv/bin/python /opt/venv/bin/tracker` -> tracker)."""
    try:
        argv = cmdline.read_bytes().split(b"\0")
    except OSError:
        return None
    names = [Path(arg.decode(errors="replace")).name for arg in argv if arg]
    return next((name for name in names if name in BY_NAME), None)


def check(url: str, timeout_s: float = TIMEOUT_S) -> bool:
    try:
        with urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (a loopback URL we built)
            return bool(resp.status == 200)
    except (URLError, OSError):
        return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="orders-healthcheck", description=__doc__)
    parser.add_argument("service", nargs="?", help="orders-api, exchange-listener, tracker, ...")
    args = parser.parse_args(argv)
    service = args.service or container_command()
    if service is None:
        sys.exit("orders-healthcheck: no service given and PID 1 runs none of ours")
    try:
        url = health_url(service, Settings().bind_host)
    except ValueError as exc:
        sys.exit(f"orders-healthcheck: {exc}")
    if not check(url):
        sys.exit(f"orders-healthcheck: {service} not healthy at {url}")


if __name__ == "__main__":
    main()
