"""Spawning the suite's child processes so that none outlives the suite.

Every child is started through a tiny launcher that asks the kernel to kill it when the suite's
process dies (Linux `PR_SET_PDEATHSIG`), then execs the real command: a suite killed with SIGKILL
leaves no server behind. Elsewhere the launcher simply execs.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

# Run by a fresh interpreter: become the given user (if any), set the parent-death signal (after
# the user change, which clears it), then become the real command.
_LAUNCHER = (
    "import ctypes, os, pwd, signal, sys\n"
    "if sys.argv[1]:\n"
    "    user = pwd.getpwnam(sys.argv[1])\n"
    "    os.setgroups([])\n"
    "    os.setgid(user.pw_gid)\n"
    "    os.setuid(user.pw_uid)\n"
    "    os.environ['HOME'] = user.pw_dir\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: IO[bytes] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """`argv` as a child that dies with us; output to `log` (else discarded)."""
    return subprocess.Popen(  # noqa: S603 (our own commands)
        [sys.executable, "-c", _LAUNCHER, user or "", *argv],
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )


async def wait_exit(proc: subprocess.Popen[Any], timeout_s: float) -> int | None:
    """The exit code, or None if `proc` still runs after `timeout_s` (without blocking)."""
    deadline = time.monotonic() + timeout_s
    while (code := proc.poll()) is None:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.05)
    return code


def unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: the user to run it as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("pgserver", "postgres"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    # The user the embedded server's wheel would create for itself.
    created = subprocess.run(
        ["useradd", "-s", "/bin/sh", "pgserver"],  # noqa: S607
        check=False,
        capture_output=True,
    )
    if created.returncode != 0:
        raise RuntimeError(f"running as root and no user to run PostgreSQL as: {created.stderr!r}")
    return "pgserver"
