"""orders-migrate: in order, once, under a lock, and never over an edited file."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from orders_core.migrate import DEFAULT_DIR, MigrationError, migrate


async def test_applies_every_file_once(db: asyncpg.Connection, db_url: str) -> None:
    # db_url is already migrated (it is copied from the migrated template): nothing to do.
    assert await migrate(db_url) == []
    names = [r["name"] for r in await db.fetch("SELECT name FROM schema_migrations ORDER BY 1")]
    assert names == sorted(p.name for p in DEFAULT_DIR.glob("*.sql"))


async def test_concurrent_runs_apply_each_migration_once(pg_server: str) -> None:
    from tests.pg import _admin, with_database

    name = "orders_migrate_race"
    await _admin(
        pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
    )
    try:
        dsn = with_database(pg_server, name)
        results = await asyncio.gather(*(migrate(dsn) for _ in range(3)))
        applied = sorted(n for r in results for n in r)
        assert applied == sorted(p.name for p in DEFAULT_DIR.glob("*.sql"))
    finally:
        await _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_refuses_an_edited_migration(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(DEFAULT_DIR, folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="edited"):
        await migrate(db_url, folder)


async def test_refuses_when_an_applied_migration_is_missing(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(DEFAULT_DIR, folder)
    sorted(folder.glob("*.sql"))[-1].unlink()
    with pytest.raises(MigrationError, match="missing"):
        await migrate(db_url, folder)


@pytest.mark.parametrize("folder", ["empty", "absent"])
async def test_refuses_a_folder_without_migrations(
    db_url: str, tmp_path: Path, folder: str
) -> None:
    if folder == "empty":
        (tmp_path / folder).mkdir()
    with pytest.raises(MigrationError, match="no migrations"):
        await migrate(db_url, tmp_path / folder)


async def test_applies_a_new_migration_and_records_it(
    db: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(DEFAULT_DIR, folder)
    (folder / "9999_probe.sql").write_text("CREATE TABLE probe (x int);")
    assert await migrate(db_url, folder) == ["9999_probe.sql"]
    assert await db.fetchval("SELECT to_regclass('probe') IS NOT NULL")


async def test_schema_enforces_the_domain(db: asyncpg.Connection) -> None:
    insert = (
        "INSERT INTO orders (id, account_id, type, side, instrument, limit_price, quantity) "
        "VALUES (gen_random_uuid(), gen_random_uuid(), $1, 'buy', 'US0378331005', $2, $3)"
    )
    for order_type, price, qty in [
        ("limit", None, 1),
        ("market", 1, 1),
        ("market", None, 0),
        ("stop", None, 1),
        ("limit", -1, 1),
    ]:
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(insert, order_type, price, qty)
    await db.execute(insert, "market", None, 1)
