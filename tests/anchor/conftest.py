"""Fixtures for anchor tests: a database on SQLite and on MariaDB, and a live anchor on 127.0.0.1.

MariaDB: a test module holds the shared test database for all its tests (the server-wide lock of
`p2pfaas.db.testing`, taken once), migrates it once, and empties every table before each test.
Dropping and migrating twenty tables per test cost about four seconds a test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pymysql  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.db import Database, open_database
from p2pfaas.db.testing import LOCK_NAME
from tests.conftest import mysql_url_or_skip

# The smallest scrypt cost the hasher allows: 1 MiB and about a millisecond, so tests stay fast.
FAST_HASHER = PasswordHasher(log2_n=10, r=8, p=1)


class _HeldMysql:
    """The test database, locked for this module by a plain (synchronous) connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self._conn = pymysql.connect(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 3306,
            user=parsed.username,
            password=parsed.password or "",
            database=parsed.database,
            autocommit=True,
        )
        self._lock = f"{LOCK_NAME}.{parsed.database}"[:64]

    def _tables(self) -> list[str]:
        with self._conn.cursor() as cursor:
            cursor.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
            )
            return [str(row[0]) for row in cursor.fetchall()]

    def _each(self, statement: str, tables: list[str]) -> None:
        with self._conn.cursor() as cursor:
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in tables:
                cursor.execute(statement.format(table=table))
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")

    def __enter__(self) -> _HeldMysql:
        with self._conn.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 600)", (self._lock,))
            if cursor.fetchone() != (1,):
                raise TimeoutError("the MySQL test database stayed in use for 600 s")
        self._each("DROP TABLE IF EXISTS `{table}`", self._tables())
        return self

    def empty(self) -> None:
        """Delete every row but the schema's version: as good as new, and migrated."""
        self._each("DELETE FROM `{table}`", [t for t in self._tables() if t != "alembic_version"])

    def __exit__(self, *exc: object) -> None:
        with self._conn.cursor() as cursor:
            cursor.execute("SELECT RELEASE_LOCK(%s)", (self._lock,))
        self._conn.close()


@pytest.fixture(scope="module")
def held_mysql() -> Iterator[_HeldMysql]:
    with _HeldMysql(mysql_url_or_skip()) as held:
        yield held


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
    held: _HeldMysql = request.getfixturevalue("held_mysql")
    held.empty()
    return held.url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    async with open_database(db_url) as database:
        yield database


async def _anchor(db_url: str, settings: AnchorSettings) -> AsyncIterator[AnchorServer]:
    async with AnchorServer(db_url, port=0, settings=settings) as anchor:
        yield anchor


@pytest.fixture
async def anchor(db_url: str) -> AsyncIterator[AnchorServer]:
    """An anchor that requires accounts (production mode), on SQLite and on MariaDB."""
    async for server in _anchor(db_url, AnchorSettings(require_accounts=True, hasher=FAST_HASHER)):
        yield server


@pytest.fixture
async def open_anchor(tmp_path: Path) -> AsyncIterator[AnchorServer]:
    """A devnet-style anchor (no accounts required), on SQLite."""
    async for server in _anchor(
        f"sqlite+aiosqlite:///{tmp_path / 'open.db'}", AnchorSettings(hasher=FAST_HASHER)
    ):
        yield server
