"""The kit of the db tests: a database on SQLite and on a real MariaDB, left unmigrated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from p2pfaas.db import Database, open_database
from p2pfaas.db.testing import exclusive_mysql_database
from tests.conftest import mysql_url_or_skip


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
async def bare_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database of each backend, with no tables (migrate=False)."""
    if request.param == "sqlite":
        async with open_database(f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}", migrate=False) as database:
            yield database
        return
    url = mysql_url_or_skip()
    async with exclusive_mysql_database(url), open_database(url, migrate=False) as database:
        yield database
