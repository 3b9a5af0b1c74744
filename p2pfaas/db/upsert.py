"""Insert-if-absent and insert-or-update, written once for both backends.

The only place where the query layer has to know the dialect: SQLite spells these
`INSERT ... ON CONFLICT`, MySQL/MariaDB `INSERT ... ON DUPLICATE KEY UPDATE`. Both are single
statements, so concurrent writers of the same key neither fail nor duplicate the row.
Not `INSERT IGNORE` on MySQL: that would also turn foreign key and type errors into warnings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite

__all__ = ["insert_ignore", "insert_ignore_many", "upsert"]


def insert_ignore(
    dialect: str, table: sa.Table, row: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, key: Sequence[str]
) -> sa.Insert:
    """INSERT `row` (or several rows in one statement), skipping any whose primary `key` exists."""
    if dialect == "mysql":
        # A no-op assignment: the statement then succeeds on a duplicate key and changes nothing.
        return mysql.insert(table).values(row).on_duplicate_key_update({key[0]: table.c[key[0]]})
    return sqlite.insert(table).values(row).on_conflict_do_nothing(index_elements=list(key))


def insert_ignore_many(dialect: str, table: sa.Table, *, key: Sequence[str]) -> sa.Insert:
    """`insert_ignore` for `connection.execute(statement, rows)`: compiled once, sent as one batch.

    For many rows this beats binding them into the statement, which SQLAlchemy would compile anew
    for every row count; the MySQL driver folds the executemany into multi-row INSERTs itself.
    """
    if dialect == "mysql":
        return mysql.insert(table).on_duplicate_key_update({key[0]: table.c[key[0]]})
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(key))


def upsert(
    dialect: str, table: sa.Table, row: Mapping[str, Any], *, key: Sequence[str], update: Sequence[str]
) -> sa.Insert:
    """INSERT `row`, or if a row with the same primary `key` exists, set its `update` columns from `row`."""
    assert update and not set(update) & set(key), (key, update)
    if dialect == "mysql":
        on_mysql = mysql.insert(table).values(row)
        return on_mysql.on_duplicate_key_update({name: on_mysql.inserted[name] for name in update})
    on_sqlite = sqlite.insert(table).values(row)
    return on_sqlite.on_conflict_do_update(
        index_elements=list(key), set_={name: on_sqlite.excluded[name] for name in update}
    )
