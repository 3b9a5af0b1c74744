"""Opening, migrating and retrying: `p2pfaas.db` against SQLite and a real MariaDB/MySQL.

MySQL tests go through `exclusive_mysql_database`, which empties the shared test database under a
server-wide lock; they skip (or fail, with P2PFAAS_REQUIRE_MYSQL=1) when no server is reachable.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from p2pfaas.db import Database, RetryPolicy, head_revision, open_database
from p2pfaas.db.schema import lessee_keys, metadata
from p2pfaas.db.testing import exclusive_mysql_database
from p2pfaas.errors import ConfigError, StorageError
from tests.conftest import mysql_url_or_skip

NO_WAIT = RetryPolicy(attempts=4, base_delay_s=0.0, max_delay_s=0.0)
REGISTRY_TABLES = {
    "lessee_keys",
    "bundles",
    "functions",
    "nodes",
    "wheels",
    "wheel_chunks",
    "revoked_bundles",
}
REGISTRY_TABLES |= {"alembic_version"}
LEDGER_TABLES = {
    "channels",
    "users",
    "api_tokens",
    "key_owners",
    "accounts",
    "transfers",
    "entries",
    "vouchers",
    "settlements",
    "payouts",
    "reputation",
    "anchor_keys",
}
TRUST_TABLES = {"replication_groups", "replica_verdicts", "held_receipts", "advert_lies"}  # revision 0003


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
        return
    mysql_url = mysql_url_or_skip()
    async with exclusive_mysql_database(mysql_url):
        yield mysql_url


@pytest.fixture
async def mysql_url() -> AsyncIterator[str]:
    url = mysql_url_or_skip()
    async with exclusive_mysql_database(url):
        yield url


async def table_names(db: Database) -> set[str]:
    def names(connection: Connection) -> set[str]:
        return set(sa.inspect(connection).get_table_names())

    async def work(connection: AsyncConnection) -> set[str]:
        return await connection.run_sync(names)

    return await db.run(work, what="list tables", write=False)


def key_row(n: int) -> dict[str, object]:
    return {"key_id": f"{n:040x}", "public_key": bytes([n]) * 32, "label": f"key {n}", "created_at": 1.0 * n}


async def count_keys(db: Database) -> int:
    async def work(connection: AsyncConnection) -> int:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(lessee_keys)) or 0)

    return await db.run(work, what="count keys", write=False)


# --- opening and migrating ----------------------------------------------------------------------


async def test_open_migrates_an_empty_database_to_head(url: str) -> None:
    async with open_database(url) as db:
        assert await db.schema_revision() == head_revision() == "0009"
        assert await table_names(db) == REGISTRY_TABLES | LEDGER_TABLES | TRUST_TABLES


async def test_reopening_is_idempotent_and_keeps_data(url: str) -> None:
    async with open_database(url) as db:
        await db.run(lambda c: c.execute(sa.insert(lessee_keys).values(key_row(1))), what="insert")
    db = await open_database(url)  # the awaitable form
    try:
        assert await db.schema_revision() == head_revision()
        assert await count_keys(db) == 1
    finally:
        await db.aclose()


async def test_migrate_false_leaves_the_database_alone(url: str) -> None:
    async with open_database(url, migrate=False) as db:
        assert await db.schema_revision() is None
        assert await table_names(db) == set()


async def test_concurrent_opens_migrate_once(url: str) -> None:
    # Several anchors starting together on one database.
    opened = await asyncio.gather(*(open_database(url) for _ in range(4)))
    try:
        for db in opened:
            assert await db.schema_revision() == head_revision()
    finally:
        for db in opened:
            await db.aclose()


async def test_schema_module_matches_the_migrations(url: str) -> None:
    def differences(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    async with open_database(url) as db:

        async def work(connection: AsyncConnection) -> list[object]:
            return await connection.run_sync(differences)

        assert await db.run(work, what="compare", write=False) == []


async def test_unsupported_urls_are_config_errors() -> None:
    for bad in ("postgresql+asyncpg://x/y", "sqlite:///plain-driver.db", "not a url"):
        with pytest.raises(ConfigError):
            await open_database(bad)


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    async with open_database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}") as db:

        async def pragmas(connection: AsyncConnection) -> tuple[object, ...]:
            return tuple(
                [
                    await connection.scalar(sa.text(f"PRAGMA {name}"))
                    for name in ("journal_mode", "foreign_keys", "busy_timeout")
                ]
            )

        assert await db.run(pragmas, what="pragmas", write=False) == ("wal", 1, 5000)

        async def orphan(connection: AsyncConnection) -> None:
            await connection.execute(
                sa.text("INSERT INTO functions VALUES (:k, 'f', :d, 0)"), {"k": "0" * 40, "d": "0" * 64}
            )

        with pytest.raises(StorageError, match="FOREIGN KEY"):
            await db.run(orphan, what="orphan")


async def test_mysql_connection_settings(mysql_url: str) -> None:
    async with open_database(mysql_url) as db:

        async def settings(connection: AsyncConnection) -> tuple[object, ...]:
            return tuple((await connection.execute(sa.text("SELECT @@character_set_connection"))).one())

        assert await db.run(settings, what="settings", write=False) == ("utf8mb4",)


async def test_unreachable_server_ends_in_storage_error() -> None:
    # Port 1 on localhost: connection refused at once (2003), as while a server restarts.
    with pytest.raises(StorageError, match="after 4 attempts"):
        await open_database("mysql+aiomysql://u:p@127.0.0.1:1/db", retry=NO_WAIT)


async def test_sqlite_writer_waits_for_another_writer(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with open_database(f"sqlite+aiosqlite:///{path}") as db:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO lessee_keys VALUES (?, ?, 'other', 0)", ("f" * 40, b"\xff" * 32))
            asyncio.get_running_loop().call_later(0.2, other.execute, "COMMIT")
            await db.run(lambda c: c.execute(sa.insert(lessee_keys).values(key_row(1))), what="insert")
        finally:
            other.close()
        assert await count_keys(db) == 2


async def test_killed_connection_mid_transaction_loses_no_write(mysql_url: str) -> None:
    killer = create_async_engine(mysql_url)
    attempts = 0

    async def two_inserts(connection: AsyncConnection) -> None:
        nonlocal attempts
        attempts += 1
        await connection.execute(sa.insert(lessee_keys).values(key_row(1)))
        if attempts == 1:
            victim = await connection.scalar(sa.text("SELECT CONNECTION_ID()"))
            async with killer.connect() as other:
                await other.execute(sa.text("KILL :id"), {"id": victim})
        await connection.execute(sa.insert(lessee_keys).values(key_row(2)))

    try:
        async with open_database(mysql_url, retry=NO_WAIT) as db:
            await db.run(two_inserts, what="two inserts")
            assert attempts == 2
            assert await count_keys(db) == 2
    finally:
        await killer.dispose()


async def test_killed_idle_connections_are_replaced(mysql_url: str) -> None:
    # What a server restart looks like from the pool: every idle connection is dead.
    killer = create_async_engine(mysql_url)
    try:
        async with open_database(mysql_url, retry=NO_WAIT) as db:
            all_checked_out = asyncio.Barrier(3)

            async def connection_id(connection: AsyncConnection) -> int:
                await all_checked_out.wait()  # three distinct pooled connections
                return int(await connection.scalar(sa.text("SELECT CONNECTION_ID()")) or 0)

            victims = await asyncio.gather(*(db.run(connection_id, what="id") for _ in range(3)))
            assert len(set(victims)) == 3
            async with killer.connect() as other:
                for victim in victims:
                    await other.execute(sa.text("KILL :id"), {"id": victim})
            await db.run(lambda c: c.execute(sa.insert(lessee_keys).values(key_row(3))), what="insert")
            assert await count_keys(db) == 1
    finally:
        await killer.dispose()


# --- bytes on the MySQL wire (see p2pfaas/db/mysql_literals.py) ---------------------------------


@pytest.mark.parametrize("sql_mode", ["", "NO_BACKSLASH_ESCAPES"])
async def test_mysql_bytes_parameters_round_trip(mysql_url: str, sql_mode: str) -> None:
    rng = random.Random(2006)
    samples = [b"", bytes(range(256)), b"\\'\"\0\n\r\x1a%s%%"]
    samples += [rng.randbytes(rng.randrange(1, 300)) for _ in range(100)]
    async with open_database(mysql_url, migrate=False) as db:

        async def echo(connection: AsyncConnection) -> list[bytes]:
            if sql_mode:
                await connection.execute(
                    sa.text("SET SESSION sql_mode = CONCAT(@@sql_mode, ',', :mode)"), {"mode": sql_mode}
                )
            query = sa.select(sa.bindparam("b", type_=sa.LargeBinary()))
            return [bytes(await connection.scalar(query, {"b": sample}) or b"") for sample in samples]

        assert await db.run(echo, what="echo", write=False) == samples
        await db.engine.dispose()  # the sql_mode change must not outlive the test in the pool
