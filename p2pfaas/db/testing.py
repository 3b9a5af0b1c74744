"""Test kit: exclusive use of a shared MySQL/MariaDB test database, emptied first.

CI and developers point every MySQL test at one database (`p2pfaas_test`) that the test user may
use but not create or drop. `exclusive_mysql_database(url)` makes that safe: it takes a server-wide
named lock (so two test processes, or two engineers' test runs, take turns instead of dropping
each other's tables), drops every table in the database, and holds the lock until the block ends.
Any test module that touches the test database should go through it.

Never point this at a database you want to keep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

__all__ = ["drop_all_tables", "exclusive_mysql_database"]

LOCK_NAME = "p2pfaas.tests.exclusive"


@asynccontextmanager
async def exclusive_mysql_database(url: str, *, timeout_s: int = 600) -> AsyncIterator[None]:
    """Hold the test database at `url` to ourselves, with no tables in it, for the block's duration."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as guard:
            lock = f"{LOCK_NAME}.{engine.url.database}"[:64]
            got = await guard.scalar(
                sa.text("SELECT GET_LOCK(:lock, :timeout_s)"), {"lock": lock, "timeout_s": timeout_s}
            )
            if got != 1:
                raise TimeoutError(f"test database {engine.url.database!r} stayed in use for {timeout_s}s")
            try:
                await drop_all_tables(guard)
                await guard.commit()
                yield
            finally:
                await guard.execute(sa.text("SELECT RELEASE_LOCK(:lock)"), {"lock": lock})
                await guard.commit()
    finally:
        await engine.dispose()


async def drop_all_tables(connection: AsyncConnection) -> None:
    """Drop every table in the connection's current MySQL database."""
    tables = sa.text(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
    )
    names = (await connection.scalars(tables)).all()
    if not names:
        return
    quoted = ", ".join(f"`{name}`" for name in names)
    await connection.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
    try:
        await connection.execute(sa.text(f"DROP TABLE IF EXISTS {quoted}"))
    finally:
        await connection.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))
