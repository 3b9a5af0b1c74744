"""Fixtures for anchor tests: a database on SQLite and on MariaDB, and a live anchor on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.db import Database, open_database
from p2pfaas.db.testing import exclusive_mysql_database
from tests.conftest import mysql_url_or_skip

# The smallest scrypt cost the hasher allows: 1 MiB and about a millisecond, so tests stay fast.
FAST_HASHER = PasswordHasher(log2_n=10, r=8, p=1)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
    return mysql_url_or_skip()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    if db_url.startswith("sqlite"):
        async with open_database(db_url) as database:
            yield database
        return
    async with exclusive_mysql_database(db_url), open_database(db_url) as database:
        yield database


async def _anchor(db_url: str, settings: AnchorSettings) -> AsyncIterator[AnchorServer]:
    if db_url.startswith("sqlite"):
        async with AnchorServer(db_url, port=0, settings=settings) as anchor:
            yield anchor
        return
    async with exclusive_mysql_database(db_url), AnchorServer(db_url, port=0, settings=settings) as anchor:
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
