"""Several processes of one service on one port (SO_REUSEPORT), so that it uses every core.

`supervise` starts N workers (the same command, marked by WORKER_ENV), restarts one that dies,
and on SIGTERM or SIGINT passes the signal on and waits for them all. Each worker is an instance
of its own (its own pool, sweeper and claims: the design already shares work between instances).
Their metrics are summed at scrape time by prometheus_client's multiprocess mode: every worker
writes its values under PROMETHEUS_MULTIPROC_DIR (a directory made per run), and whichever worker
answers `GET /metrics` reads them all (orders_core.web.metrics_handler).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from types import FrameType

from prometheus_client import multiprocess as shared_metrics

log = logging.getLogger(__name__)

WORKER_ENV = "ORDERS_WORKER"  # set in a worker's environment: serve, do not supervise
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
RESTART_DELAY_S = 1.0  # a worker that died is started again after this
STOP_TIMEOUT_S = 30.0  # then SIGKILL
POLL_S = 0.2


def is_worker() -> bool:
    return bool(os.environ.get(WORKER_ENV))


def shared_metrics_on() -> bool:
    """Whether metrics are shared between worker processes."""
    return bool(os.environ.get(MULTIPROC_ENV))


def supervise(count: int, argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run `count` workers of `argv` until SIGTERM/SIGINT; 0 once they have all stopped."""
    metrics_dir = tempfile.mkdtemp(prefix="orders-metrics-")
    child_env = {**env, WORKER_ENV: "1", MULTIPROC_ENV: metrics_dir}
    stopping: list[int] = []

    def stop(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    workers = [_start(argv, child_env, i) for i in range(count)]
    log.info("workers started", extra={"workers": [w.pid for w in workers]})
    try:
        while not stopping:
            time.sleep(POLL_S)
            for i, worker in enumerate(workers):
                code = worker.poll()
                if code is not None and not stopping:
                    log.error(
                        "worker died; starting it again", extra={"pid": worker.pid, "code": code}
                    )
                    _forget(worker.pid, metrics_dir)
                    time.sleep(RESTART_DELAY_S)
                    workers[i] = _start(argv, child_env, i)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in workers:
            try:
                worker.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _start(argv: Sequence[str], env: Mapping[str, str], index: int) -> subprocess.Popen[bytes]:
    # Our own interpreter and module (orders_api.__main__), not input.
    return subprocess.Popen(list(argv), env={**env, "ORDERS_WORKER_INDEX": str(index)})  # noqa: S603


def _forget(pid: int, metrics_dir: str) -> None:
    """A dead worker's live gauges no longer count (its counters and histograms still do)."""
    shared_metrics.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
