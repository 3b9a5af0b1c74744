"""The tables (`p2pfaas.db.schema`): each exported table is in the metadata with a primary key, and
constraints are named by the convention. That the migrations make exactly these tables is
tests/db/test_engine.py's `test_schema_module_matches_the_migrations`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database, schema


def test_every_exported_table_is_in_the_metadata_with_a_named_primary_key() -> None:
    tables = {name for name in schema.__all__ if name != "metadata"}
    assert tables <= set(schema.metadata.tables)
    for name in tables:
        table = getattr(schema, name)
        assert isinstance(table, sa.Table) and table.name == name
        assert table.primary_key.columns, name
        assert table.primary_key.name == f"pk_{name}"


async def test_the_metadata_creates_every_table_and_its_checks_hold(bare_db: Database) -> None:
    async def create(connection: AsyncConnection) -> set[str]:
        await connection.run_sync(schema.metadata.create_all)
        return set(await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names()))

    assert set(schema.metadata.tables) <= await bare_db.run(create, what="create")
