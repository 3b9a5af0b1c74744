"""Opening the anchor database: one async SQLAlchemy engine over SQLite or MySQL/MariaDB, migrated.

`open_database(url)` builds the engine for `sqlite+aiosqlite:///path.db` (the devnet default) or
`mysql+aiomysql://user:pass@host/db` (production), brings the schema to the newest Alembic revision,
and yields a `Database`. `Database.run` is how stores talk to it: one transaction per call, retried
through transient failures (see `retry.py`).

Per-backend settings, applied to every new connection:
- SQLite: WAL journal (readers never block the writer), foreign keys on, a 5 s busy timeout. The
  driver's own implicit transactions are switched off and we emit BEGIN ourselves, so migrations
  are transactional and a write transaction takes the write lock up front (BEGIN IMMEDIATE):
  two writers queue on the busy timeout instead of failing a read-to-write lock upgrade.
- MySQL/MariaDB: utf8mb4, a pre-ping on checkout (a server restart costs no request), connections
  recycled after an hour (well inside the server's wait_timeout), the server's default isolation
  (REPEATABLE READ on InnoDB), bytes sent compactly (`mysql_literals.py`). Migrations hold a
  server-wide named lock, so several anchors starting together on one database migrate it once.

This module knows no tables; `schema.py` does, and the stores hold the queries.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from p2pfaas.clock import off_loop
from p2pfaas.db.mysql_literals import escaped_size, install_bytes_escaper
from p2pfaas.db.retry import RetryPolicy, retry_transient
from p2pfaas.errors import ConfigError, StorageError

__all__ = ["MIGRATIONS_DIR", "Database", "head_revision", "make_engine", "open_database"]

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
MYSQL_POOL_RECYCLE_S = 3600
MYSQL_CONNECT_TIMEOUT_S = 10
MIGRATION_LOCK_TIMEOUT_S = 60
STATEMENT_OVERHEAD_BYTES = 16 * 1024  # the SQL text around the values, with room to spare
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "mysql+aiomysql")
# An execution option read by the SQLite "begin" listener: the statement that opens a transaction.
_SQLITE_BEGIN = "p2pfaas_sqlite_begin"


class Database:
    """An open, migrated database. Made by `open_database`; closed by `aclose` or `async with`."""

    def __init__(self, engine: AsyncEngine, *, retry: RetryPolicy, rng: random.Random) -> None:
        self.engine = engine
        self.retry = retry
        self._rng = rng
        # Same pool; on SQLite its transactions open with BEGIN IMMEDIATE.
        self._write_engine = engine.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        self._max_packet_bytes: int | None = None  # MySQL's max_allowed_packet, read on open

    def fits_in_one_statement(self, *values: bytes) -> bool:
        """Whether one statement can carry `values` as parameters.

        MySQL answers a statement over its max_allowed_packet by dropping the connection, which
        would look transient and be retried in vain; stores check first and refuse instead.
        """
        if self._max_packet_bytes is None:
            return True
        return sum(map(escaped_size, values)) + STATEMENT_OVERHEAD_BYTES <= self._max_packet_bytes

    @property
    def dialect(self) -> str:
        """ "sqlite" or "mysql" (MariaDB included)."""
        return self.engine.dialect.name

    async def run(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, what: str, write: bool = True
    ) -> T:
        """Run `work(connection)` in one transaction, committed if it returns, retried if transient.

        `work` may run more than once, so it must be idempotent and keep no state between runs.
        `what` names the operation in errors. Read-only work passes `write=False`.
        """
        engine = self._write_engine if write else self.engine

        async def attempt() -> T:
            # The driver works in its own thread; a simulated clock must not run on meanwhile.
            with off_loop():
                async with engine.begin() as connection:
                    return await work(connection)

        return await retry_transient(attempt, what=what, policy=self.retry, rng=self._rng)

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at, or None if it was never migrated."""

        def current(connection: Connection) -> str | None:
            return MigrationContext.configure(connection).get_current_revision()

        async def work(connection: AsyncConnection) -> str | None:
            return await connection.run_sync(current)

        return await self.run(work, what="read schema revision", write=False)

    async def read_server_limits(self) -> None:
        """Learn the server's limits that `fits_in_one_statement` checks (a no-op on SQLite)."""
        if self.dialect != "mysql":
            return

        async def work(connection: AsyncConnection) -> int:
            return int(await connection.scalar(sa.text("SELECT @@max_allowed_packet")) or 0)

        self._max_packet_bytes = await self.run(work, what="read max_allowed_packet", write=False)

    async def migrate(self) -> None:
        """Upgrade the schema to the newest revision; a no-op when it is already there."""
        # Alembic keeps its running migration context in module globals: one at a time per process
        # (per event loop; databases are not migrated from several threads' loops at once).
        async with _migration_lock():
            await retry_transient(self._migrate_once, what="migrate", policy=self.retry, rng=self._rng)

    async def _migrate_once(self) -> None:
        with off_loop():
            await self._migrate_holding_the_lock()

    async def _migrate_holding_the_lock(self) -> None:
        async with self._write_engine.connect() as connection:
            if self.dialect != "mysql":
                await connection.run_sync(_upgrade_to_head)
                return
            # GET_LOCK names are server-wide: qualify ours by the database.
            lock = f"p2pfaas.migrate.{connection.engine.url.database}"[:64]
            got = await connection.scalar(
                sa.text("SELECT GET_LOCK(:lock, :timeout_s)"),
                {"lock": lock, "timeout_s": MIGRATION_LOCK_TIMEOUT_S},
            )
            await connection.commit()
            if got != 1:
                raise StorageError(f"migrate: another process held {lock!r} for {MIGRATION_LOCK_TIMEOUT_S}s")
            try:
                await connection.run_sync(_upgrade_to_head)
                await connection.commit()
            finally:
                await connection.execute(sa.text("SELECT RELEASE_LOCK(:lock)"), {"lock": lock})
                await connection.commit()

    async def aclose(self) -> None:
        """Close every pooled connection. The engine is unusable afterwards."""
        with off_loop():
            await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _OpeningDatabase:
    """What `open_database` returns: await it for a `Database`, or use it with `async with`."""

    def __init__(self, url: str, *, migrate: bool, retry: RetryPolicy, rng: random.Random) -> None:
        self._url = url
        self._migrate = migrate
        self._retry = retry
        self._rng = rng
        self._database: Database | None = None

    async def _open(self) -> Database:
        database = Database(make_engine(self._url), retry=self._retry, rng=self._rng)
        try:
            if self._migrate:
                await database.migrate()
            await database.read_server_limits()
        except BaseException:
            await database.aclose()
            raise
        return database

    def __await__(self) -> Generator[Any, None, Database]:
        return self._open().__await__()

    async def __aenter__(self) -> Database:
        self._database = await self._open()
        return self._database

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._database is not None
        await self._database.aclose()


def open_database(
    url: str,
    *,
    migrate: bool = True,
    retry: RetryPolicy | None = None,
    rng: random.Random | None = None,
) -> _OpeningDatabase:
    """Open (and unless `migrate=False`, migrate to head) the database at `url`.

    Use as `async with open_database(url) as db:` or `db = await open_database(url)` followed by
    `await db.aclose()`. `rng` jitters retry backoff; pass a seeded one for reproducible runs.
    Raises `ConfigError` for an unsupported URL and `StorageError` if the database stays unreachable.
    """
    return _OpeningDatabase(url, migrate=migrate, retry=retry or RetryPolicy(), rng=rng or random.Random())


def make_engine(url: str) -> AsyncEngine:
    """The configured async engine for `url` (not yet connected, not migrated)."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as error:
        raise ConfigError(f"not a database URL: {url!r}") from error
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ConfigError(
            f"database URL must start with one of {SUPPORTED_DRIVERS}, not {parsed.drivername!r}"
        )
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed)
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        event.listen(engine.sync_engine, "begin", _begin_sqlite_transaction)
        return engine
    engine = create_async_engine(
        parsed,
        pool_pre_ping=True,
        pool_recycle=MYSQL_POOL_RECYCLE_S,
        connect_args={"charset": "utf8mb4", "connect_timeout": MYSQL_CONNECT_TIMEOUT_S},
    )
    event.listen(engine.sync_engine, "connect", _configure_mysql_connection)
    return engine


def _configure_mysql_connection(dbapi_connection: Any, connection_record: Any) -> None:
    install_bytes_escaper(dbapi_connection.driver_connection)


def _configure_sqlite_connection(dbapi_connection: Any, connection_record: Any) -> None:
    # No implicit BEGIN from the driver: `_begin_sqlite_transaction` emits our own.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    connection.exec_driver_sql(connection.get_execution_options().get(_SQLITE_BEGIN, "BEGIN"))


_migration_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _migration_lock() -> asyncio.Lock:
    return _migration_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade_to_head(connection: Connection) -> None:
    run_alembic(connection, lambda config: command.upgrade(config, "head"))


def run_alembic(connection: Connection, step: Callable[[Config], None]) -> None:
    """Run an Alembic command `step(config)` over `connection` (not in a transaction yet).

    SQLite changes a table's constraints only by rebuilding it, and dropping a table that others
    reference breaks their foreign keys until the rebuilt one takes its name. SQLite's procedure
    (lang_altertable.html): foreign keys off, outside the transaction (a PRAGMA inside one is a
    no-op), while migrating; a revision that rebuilds runs `PRAGMA foreign_key_check` itself.
    """
    if connection.dialect.name != "sqlite":
        step(_alembic_config(connection))
        return
    raw = connection.connection.dbapi_connection
    assert raw is not None
    _sqlite_pragma(raw, "PRAGMA foreign_keys=OFF")
    try:
        step(_alembic_config(connection))
    finally:
        _sqlite_pragma(raw, "PRAGMA foreign_keys=ON")


def _sqlite_pragma(raw: Any, statement: str) -> None:
    cursor = raw.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def head_revision() -> str:
    """The newest revision in `migrations/versions`."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head
