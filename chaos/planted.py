"""`python -m chaos.planted <bug> [<service package>]`: a service's process (the API's unless
said, its own main) with a bug planted by monkeypatching, to prove that the chaos suite catches
it. No switch lives in production code. `PLANTED_IN` says which services' processes run it.

- `no-lookup`: a retry places the order again without asking the exchange first whether the
  earlier, unanswered request booked it (finding 2's cause in the seed's design).
- `fencing-by-instance`: the writes of an attempt's outcome (FINISH) and the start of an attempt
  (BEGIN_ATTEMPT) match the instance (`lease_owner`) instead of the claim (`lease_token`), as
  before issue 9's fix (finding 1): a write delayed past its lease lands on the instance's own
  next claim of the order.
- `lookup-at-arrival`: a lookup's "not found" is judged by when its answer arrived rather than
  when it was asked, and an attempt leaves its order due at once rather than after its deadline,
  as before issue 9's fix (finding 2; each half alone is masked by the other).
- `leadership-through-pooler` (listeners and trackers): the leaders take their session lock on
  DATABASE_URL, the transaction pooler, instead of DATABASE_DIRECT_URL, and without the session's
  keepalive settings (PgBouncer refuses those as startup parameters, so with them the bug shows
  as no leader at all). The lock then lands on a pooled server connection: whichever client the
  pool hands that connection to next takes the lock again (two leaders), and a leader that dies
  leaves it held (none).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from typing import Any

import exchange_listener.app as listener_app
import orders_api.__main__ as api_main
import orders_core.leader
import tracker.app as tracker_app
from orders_api import placement, policy, store
from orders_api.keys import INSTANCE
from orders_core.db import database_url

_OWNER: list[str] = []  # this process's instance id, once its app exists


def _patch(owner: object, name: str, value: object) -> None:
    if not hasattr(owner, name):  # renamed in production code: nothing would be planted
        raise RuntimeError(f"cannot plant: {owner!r} has no {name}")
    setattr(owner, name, value)


def _plant_no_lookup() -> None:
    real_advance = placement.Placer._advance

    async def advance(self: placement.Placer, row: Any) -> None:
        if row["attempts"] < self._policy.max_attempts:
            row = {**dict(row), "pending_deadline": None}  # as if nothing were pending
        await real_advance(self, row)

    _patch(placement.Placer, "_advance", advance)


def _replaced(sql: str, old: str, new: str) -> str:
    if old not in sql:  # production SQL changed: the bug would silently not be planted
        raise RuntimeError(f"cannot plant: {old!r} is no longer in the statement")
    return sql.replace(old, new)


def _rebound(func: Callable[..., Any], **values: Callable[[], Any]) -> Callable[..., Any]:
    """`func` with some of its arguments, by name, replaced by what `values` give at each call.
    Checked now: a renamed parameter would otherwise plant nothing, silently."""
    signature = inspect.signature(func)
    missing = set(values) - set(signature.parameters)
    if missing:
        raise RuntimeError(f"cannot plant: {func.__qualname__} has no {sorted(missing)}")

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        for name, value in values.items():
            bound.arguments[name] = value()
        return func(*bound.args, **bound.kwargs)

    return call


def _plant_fencing_by_instance() -> None:
    """FINISH and BEGIN_ATTEMPT match `lease_owner` = this instance where they matched the
    claim's `lease_token`: their callers pass the instance id in the token's place."""
    _patch(store, "FINISH", _replaced(store.FINISH, "lease_token = $2", "lease_owner = $2"))
    begin = _replaced(store.BEGIN_ATTEMPT, "lease_token = $2", "lease_owner = $2")
    _patch(store, "BEGIN_ATTEMPT", begin)
    real_create_app = getattr(api_main, "create_app")  # noqa: B009 (not re-exported)

    def create_app(*args: Any, **kwargs: Any) -> Any:
        app = real_create_app(*args, **kwargs)
        _OWNER.append(app[INSTANCE])
        return app

    _patch(api_main, "create_app", create_app)
    for name in ("finish", "begin_attempt"):
        _patch(store, name, _rebound(getattr(store, name), token=lambda: _OWNER[0]))


def _plant_lookup_at_arrival() -> None:
    """after_lookup gets the answer's arrival as the time the lookup was asked, and an attempt
    makes its order due at once (not past its deadline)."""
    real_after_lookup: Callable[..., Any] = policy.after_lookup
    signature = inspect.signature(real_after_lookup)
    if not {"asked_at", "now"} <= set(signature.parameters):
        raise RuntimeError("cannot plant: after_lookup has no asked_at or now")

    def after_lookup(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.arguments["asked_at"] = bound.arguments["now"]  # judged when the answer arrived
        return real_after_lookup(*bound.args, **bound.kwargs)

    _patch(placement, "after_lookup", after_lookup)
    _patch(store, "begin_attempt", _rebound(store.begin_attempt, settled=policy.utcnow))


def _plant_leadership_through_pooler() -> None:
    for app in (listener_app, tracker_app):
        _patch(app, "direct_database_url", database_url)
    _patch(orders_core.leader, "KEEPALIVES", {})


BUGS: dict[str, Callable[[], None]] = {
    "no-lookup": _plant_no_lookup,
    "fencing-by-instance": _plant_fencing_by_instance,
    "lookup-at-arrival": _plant_lookup_at_arrival,
    "leadership-through-pooler": _plant_leadership_through_pooler,
}
API = "orders_api"
# The service packages whose processes run a bug; the API's when not listed.
PLANTED_IN = {"leadership-through-pooler": ("exchange_listener", "tracker")}


def planted_in(bug: str) -> tuple[str, ...]:
    return PLANTED_IN.get(bug, (API,))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    bug, service = (args[0], args[1] if len(args) > 1 else API) if args else ("", "")
    if len(args) > 2 or bug not in BUGS or service not in planted_in(bug):
        sys.exit(f"usage: python -m chaos.planted {{{','.join(BUGS)}}} [service package]")
    BUGS[bug]()
    print(f"chaos.planted: running {service} with bug {bug!r}", file=sys.stderr, flush=True)
    importlib.import_module(f"{service}.__main__").main()


if __name__ == "__main__":
    main()
