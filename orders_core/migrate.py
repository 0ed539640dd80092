"""`orders-migrate`: apply migrations/NNNN_*.sql in order, once each, under an advisory lock.

Each applied file is recorded with its checksum; a file edited after it was applied, or an applied
file that is missing, stops the run: the database and the code would no longer agree.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from orders_core.db import direct_database_url, mask_dsn
from orders_core.logs import setup_logging
from orders_core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(
    os.environ.get("MIGRATIONS_DIR", Path(__file__).resolve().parent.parent / "migrations")
)
LOCK_KEY = 0x6F72646572735F6D  # "orders_m": one advisory lock for every migration run
NAME_RE = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
SELECT_APPLIED = "SELECT name, checksum FROM schema_migrations"
RECORD = "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)"


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path) -> list[Migration]:
    files = sorted(p for p in directory.glob("*.sql"))
    if not files:  # a wrong MIGRATIONS_DIR must not look like an up-to-date database
        raise MigrationError(f"no migrations in {directory}")
    bad = [p.name for p in files if not NAME_RE.match(p.name)]
    if bad:
        raise MigrationError(f"migration file names must look like 0001_name.sql: {bad}")
    return [Migration(p.name, p.read_text()) for p in files]


def pending(migrations: list[Migration], applied: dict[str, str]) -> list[Migration]:
    """The migrations still to apply; raises when what was applied no longer matches the files."""
    known = {m.name: m for m in migrations}
    missing = sorted(set(applied) - set(known))
    if missing:
        raise MigrationError(f"applied migrations missing from the code: {missing}")
    edited = [m.name for m in migrations if m.name in applied and applied[m.name] != m.checksum]
    if edited:
        raise MigrationError(f"applied migrations were edited afterwards: {edited}")
    return [m for m in migrations if m.name not in applied]


async def migrate(dsn: str, directory: Path = DEFAULT_DIR) -> list[str]:
    """Apply every pending migration; returns the names applied."""
    migrations = discover(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            await conn.execute(CREATE_LEDGER)
            applied = {r["name"]: r["checksum"] for r in await conn.fetch(SELECT_APPLIED)}
            todo = pending(migrations, applied)
            for migration in todo:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(RECORD, migration.name, migration.checksum)
                log.info("migration applied", extra={"migration": migration.name})
            return [m.name for m in todo]
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="orders-migrate", description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="migrations folder")
    args = parser.parse_args(argv)
    settings = Settings()
    setup_logging(settings.log_level)
    dsn = direct_database_url(settings)  # the advisory lock needs a session
    try:
        applied = asyncio.run(migrate(dsn, args.dir))
    except (MigrationError, OSError, asyncpg.PostgresError) as exc:
        log.error("migration failed: %s", exc, extra={"dsn": mask_dsn(dsn)})
        sys.exit(1)
    log.info("database up to date", extra={"applied": applied, "dsn": mask_dsn(dsn)})
