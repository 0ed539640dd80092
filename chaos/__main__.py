"""`python -m chaos [--profile ci|long|...] [--seed N] [--minutes M] [--orders N]`: one chaos run
(README, "Chaos suite"). Exit status 0 when every invariant holds, 1 when one fails, 2 when the
run itself could not be carried out."""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
from pathlib import Path

from chaos.planted import BUGS
from chaos.profiles import PROFILES
from chaos.runner import RunConfig, run


def parse(argv: list[str] | None) -> RunConfig:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci")
    parser.add_argument("--seed", type=int, help="replay a run (default: ci 1, others random)")
    parser.add_argument("--minutes", type=float, help="minutes of load (overrides --orders)")
    parser.add_argument("--orders", type=int, help="how many orders")
    parser.add_argument("--planted", choices=sorted(BUGS), help="run the APIs with a planted bug")
    parser.add_argument(
        "--report", type=Path, help="also write the report to this file (or into this folder)"
    )
    parser.add_argument("--json", type=Path, help="write the result as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data directory")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    seed = args.seed
    if seed is None:
        seed = 1 if profile.name == "ci" else random.SystemRandom().randrange(1, 10**6)
    minutes = args.minutes if args.minutes is not None else profile.minutes
    if args.orders is not None:
        orders = args.orders
    elif minutes is not None:
        orders = max(1, round(minutes * 60 * profile.rate))
    else:
        orders = profile.orders
    return RunConfig(profile, seed, orders, args.planted, args.report, args.json, args.keep)


async def _main(config: RunConfig) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)  # stop cleanly, processes and all
    return await run(config)


def main(argv: list[str] | None = None) -> None:
    config = parse(argv)
    try:
        code = asyncio.run(_main(config))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("chaos: interrupted; everything it started is stopped", file=sys.stderr)
        code = 2
    except Exception as exc:
        print(f"chaos: the run could not be carried out: {exc!r}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
