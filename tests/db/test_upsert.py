"""Insert-if-absent and insert-or-update (`p2pfaas.db.upsert`) on SQLite and a real MariaDB: a
repeated key changes nothing, or only the columns named, and concurrent writers of one key agree."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.upsert import insert_ignore, insert_ignore_many, upsert

METADATA = sa.MetaData()
THINGS = sa.Table(
    "upsert_things",
    METADATA,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("note", sa.String(40), nullable=False),
)


async def rows(db: Database) -> list[tuple[str, int, str]]:
    async def read(connection: AsyncConnection) -> list[tuple[str, int, str]]:
        result = await connection.execute(sa.select(THINGS).order_by(THINGS.c.name))
        return [(r.name, r.size, r.note) for r in result]

    return await db.run(read, what="read", write=False)


async def make_table(db: Database) -> None:
    async def create(connection: AsyncConnection) -> None:
        await connection.run_sync(METADATA.create_all)

    await db.run(create, what="create")


async def test_insert_ignore_keeps_the_first_row_of_a_key(bare_db: Database) -> None:
    db = bare_db
    await make_table(db)

    async def put(size: int) -> None:
        async def work(connection: AsyncConnection) -> None:
            row = {"name": "a", "size": size, "note": "first" if size == 1 else "later"}
            await connection.execute(insert_ignore(db.dialect, THINGS, row, key=["name"]))

        await db.run(work, what="put")

    await put(1)
    await put(2)
    await asyncio.gather(*(put(n) for n in range(3, 8)))
    assert await rows(db) == [("a", 1, "first")]

    async def several(connection: AsyncConnection) -> None:
        batch = [{"name": n, "size": 9, "note": "batch"} for n in ("a", "b", "c")]
        await connection.execute(insert_ignore(db.dialect, THINGS, batch, key=["name"]))
        many = [{"name": n, "size": 10, "note": "many"} for n in ("c", "d")]
        await connection.execute(insert_ignore_many(db.dialect, THINGS, key=["name"]), many)

    await db.run(several, what="several")
    assert await rows(db) == [("a", 1, "first"), ("b", 9, "batch"), ("c", 9, "batch"), ("d", 10, "many")]


async def test_upsert_sets_only_the_columns_it_names(bare_db: Database) -> None:
    db = bare_db
    await make_table(db)

    async def put(size: int, note: str) -> None:
        async def work(connection: AsyncConnection) -> None:
            row = {"name": "a", "size": size, "note": note}
            await connection.execute(upsert(db.dialect, THINGS, row, key=["name"], update=["size"]))

        await db.run(work, what="put")

    await put(1, "kept")
    assert await rows(db) == [("a", 1, "kept")]
    await put(5, "ignored")
    assert await rows(db) == [("a", 5, "kept")]
