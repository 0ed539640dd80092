"""`orders-keys`: make, list and revoke API keys (SPEC §7). Reads DATABASE_URL like every process.

orders-keys create --account NAME [--scope trade|read]   the key, once, alone on the last line
orders-keys list
orders-keys revoke KEY_ID
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from orders_core import apikeys
from orders_core.apikeys import Scope
from orders_core.db import DB_ERRORS, direct_database_url
from orders_core.settings import Settings


async def create_key(dsn: str, account: str, scope: Scope) -> apikeys.NewKey:
    conn = await asyncpg.connect(dsn)
    try:
        return await apikeys.create(conn, account, scope)
    finally:
        await conn.close()


async def _run(args: argparse.Namespace, dsn: str) -> int:
    if args.command == "create":
        new = await create_key(dsn, args.account, Scope(args.scope))
        print(f"key {new.key_id} for account {args.account}, scope {args.scope}; keep it secret,")
        print("it is shown only now. Use it as: Authorization: Bearer <key>")
        print(new.key)
        return 0
    conn = await asyncpg.connect(dsn)
    try:
        if args.command == "list":
            print(f"{'key id':<14}{'account':<20}{'scope':<7}{'created':<27}revoked")
            for r in await apikeys.listed(conn):
                revoked = r["revoked_at"].isoformat() if r["revoked_at"] else "-"
                created = r["created_at"].isoformat(timespec="seconds")
                print(f"{r['id']:<14}{r['account']:<20}{r['scope']:<7}{created:<27}{revoked}")
            return 0
        if await apikeys.revoke(conn, args.key_id):
            print(f"key {args.key_id} revoked")
            return 0
        print(f"no key {args.key_id}", file=sys.stderr)
        return 1
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="orders-keys", description="API keys of the orders API")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key (printed once, on the last line)")
    create.add_argument("--account", required=True, help="the account the key acts for")
    create.add_argument("--scope", choices=[s.value for s in Scope], default=Scope.TRADE.value)
    commands.add_parser("list", help="every key: id, account, scope, created, revoked")
    revoke = commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)
    try:
        code = asyncio.run(_run(args, direct_database_url(Settings())))
    except ValueError as exc:
        sys.exit(f"orders-keys: {exc}")
    except DB_ERRORS as exc:
        sys.exit(f"orders-keys: database error: {exc.__class__.__name__}")
    sys.exit(code)


if __name__ == "__main__":
    main()
