"""Retrying database work through transient failures.

`retry_transient` runs an attempt again, with capped exponential backoff and jitter
(`p2pfaas.backoff`), when it fails in a way that a later attempt can cure: a MySQL deadlock (1213)
or lock wait timeout (1205), a lost or killed connection (2006, 2013, 1927, ...), a server that is
restarting (2003, 1053), or SQLite's "database is locked". After a bounded number of attempts, or
at once for any other database error, it raises `StorageError` chained to the driver's exception.

An attempt must be a whole transaction that is safe to run twice: a connection lost during COMMIT
leaves it unknown whether the first run landed. Every store operation is idempotent for that reason.

This module does not open connections or transactions itself (see `engine.Database.run`), and it
reads no clock: it sleeps with `asyncio.sleep`, so a simulated loop drives it in virtual time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import exc as sa_exc

from p2pfaas.backoff import Backoff
from p2pfaas.errors import StorageError

__all__ = ["RetryPolicy", "is_transient", "retry_transient"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# MySQL/MariaDB error codes worth another attempt.
TRANSIENT_MYSQL_CODES = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1205,  # lock wait timeout exceeded
        1213,  # deadlock found; the transaction was rolled back
        1927,  # MariaDB: connection was killed
        2002,  # can't connect through the local socket
        2003,  # can't connect to server (it is restarting)
        2006,  # server has gone away
        2013,  # lost connection during query
        2014,  # commands out of sync (a half-read connection)
        2055,  # lost connection at handshake
        4031,  # MySQL 8: disconnected by the server for inactivity
    }
)
TRANSIENT_SQLITE_MESSAGES = ("database is locked", "database table is locked", "database is busy")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The defaults wait at least ~8 s in all, enough to ride out a server restart."""

    attempts: int = 10
    base_delay_s: float = 0.05
    max_delay_s: float = 5.0

    def __post_init__(self) -> None:
        assert self.attempts >= 1, self.attempts
        assert 0 <= self.base_delay_s <= self.max_delay_s, (self.base_delay_s, self.max_delay_s)

    def delay_s(self, failures: int, rng: random.Random) -> float:
        """The pause after the `failures`-th failure: half fixed, half random ("equal jitter")."""
        return Backoff(self.base_delay_s, self.max_delay_s).pause_s(failures, rng)


def mysql_error_code(error: object) -> int | None:
    """The numeric MySQL error code of a PyMySQL/aiomysql exception, if it carries one."""
    args = getattr(error, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def is_transient(error: BaseException) -> bool:
    """Whether `error` (a SQLAlchemy exception) may succeed on a fresh attempt."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:  # SQLAlchemy saw a disconnect and dropped the connection
        return True
    original = error.orig
    code = mysql_error_code(original)
    if code is not None and code in TRANSIENT_MYSQL_CODES:
        return True
    message = str(original).lower()
    return any(fragment in message for fragment in TRANSIENT_SQLITE_MESSAGES)


async def retry_transient(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy,
    rng: random.Random,
) -> T:
    """Await `attempt()` until it succeeds, retrying transient database failures per `policy`.

    Exceptions that are not SQLAlchemy errors (a `Refused` raised by the attempt, a cancellation)
    pass through untouched; database errors end as `StorageError` naming `what`.
    """
    failures = 0
    while True:
        try:
            return await attempt()
        except sa_exc.SQLAlchemyError as error:
            if not is_transient(error):
                raise StorageError(f"{what}: database error: {error.__class__.__name__}: {error}") from error
            failures += 1
            if failures >= policy.attempts:
                raise StorageError(
                    f"{what}: database still unavailable after {failures} attempts: {error}"
                ) from error
            delay_s = policy.delay_s(failures, rng)
            log.warning(
                "%s: transient database error (attempt %d, retrying in %.2fs): %s",
                what,
                failures,
                delay_s,
                error,
            )
            await asyncio.sleep(delay_s)
