"""Alembic environment: migrate over the connection that `p2pfaas.db.engine` hands in.

The engine module builds the Alembic `Config` in code, opens a connection on the async engine and
calls `command.upgrade` inside `AsyncConnection.run_sync`, passing the synchronous connection as
`config.attributes["connection"]` (Alembic's documented recipe for async engines). This file only
binds that connection to the migration context; it creates no engine and reads no alembic.ini.
Offline (SQL script) mode is not supported.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from p2pfaas.db.schema import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("p2pfaas migrations run through p2pfaas.db.open_database(), not the alembic CLI")
    context.configure(
        connection=connection,
        target_metadata=metadata,  # lets tests compare the migrated database with schema.py
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
