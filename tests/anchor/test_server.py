"""The anchor server's lifecycle (`p2pfaas.anchor.server`): it opens and migrates its database, serves
on the port the OS gives it, names itself by its configured public URL, and stops cleanly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.server import AnchorServer, _redact
from p2pfaas.db import open_database
from p2pfaas.db.schema import metadata


async def test_it_serves_on_a_free_port_over_a_migrated_database_and_stops(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
    async with AnchorServer(db_url, port=0) as anchor:
        assert anchor.url.startswith("http://127.0.0.1:") and not anchor.url.endswith(":0")
        assert anchor.public_url == anchor.url and anchor.dht is None
        async with aiohttp.ClientSession() as session, session.get(f"{anchor.url}/v1/whoami") as answer:
            assert answer.status == 200
        url = anchor.url
    async with open_database(db_url, migrate=False) as db:  # migrated: every table is there

        async def tables(connection: AsyncConnection) -> set[str]:
            return set(await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names()))

        assert set(metadata.tables) <= await db.run(tables, what="tables", write=False)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{url}/v1/whoami")


async def test_the_public_url_is_the_configured_one(tmp_path: Path) -> None:
    settings = dataclasses.replace(AnchorSettings(), public_url="https://anchor.example")
    async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0, settings=settings) as anchor:
        assert anchor.public_url == "https://anchor.example" != anchor.url


def test_a_database_password_is_never_printed() -> None:
    assert (
        _redact("mysql+aiomysql://p2pfaas:secret@db:3306/p2pfaas")
        == "mysql+aiomysql://p2pfaas:***@db:3306/p2pfaas"
    )
    assert _redact("sqlite+aiosqlite:///anchor.db") == "sqlite+aiosqlite:///anchor.db"
