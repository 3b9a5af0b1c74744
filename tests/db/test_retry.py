"""Transactions retried through transient database failures (p2pfaas/db/retry.py): deadlocks, lock
timeouts and lost connections are retried with capped, jittered backoff; permanent errors and
foreign exceptions are not; giving up is one clear `StorageError`."""

from __future__ import annotations

import random
import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from p2pfaas.db import RetryPolicy, is_transient, retry_transient
from p2pfaas.errors import StorageError

NO_WAIT = RetryPolicy(attempts=4, base_delay_s=0.0, max_delay_s=0.0)


class DriverError(Exception):
    """Shaped like PyMySQL's errors, whose args are (MySQL error code, message)."""


def mysql_error(code: int) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, DriverError(code, "boom"))


def test_transient_errors_are_recognised() -> None:
    for code in (1205, 1213, 1927, 2003, 2006, 2013):
        assert is_transient(mysql_error(code)), code
    assert is_transient(sa_exc.OperationalError("x", {}, sqlite3.OperationalError("database is locked")))
    duplicate = sa_exc.IntegrityError("x", {}, DriverError(1062, "Duplicate entry"))
    assert not is_transient(duplicate)
    assert not is_transient(sa_exc.OperationalError("x", {}, sqlite3.OperationalError("no such table: t")))
    assert not is_transient(ValueError("not a database error"))


async def test_retry_rides_out_transient_failures() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise mysql_error(1213)
        return "done"

    assert await retry_transient(flaky, what="flaky", policy=NO_WAIT, rng=random.Random(1)) == "done"
    assert calls == 4


async def test_retry_gives_up_with_a_clear_error() -> None:
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise mysql_error(2003)

    with pytest.raises(StorageError, match=r"write thing: .* after 4 attempts") as caught:
        await retry_transient(down, what="write thing", policy=NO_WAIT, rng=random.Random(1))
    assert calls == 4
    assert isinstance(caught.value.__cause__, sa_exc.OperationalError)


async def test_retry_does_not_repeat_permanent_errors_or_foreign_exceptions() -> None:
    calls = 0

    async def duplicate() -> None:
        nonlocal calls
        calls += 1
        raise sa_exc.IntegrityError("x", {}, DriverError(1062, "Duplicate entry"))

    with pytest.raises(StorageError, match="IntegrityError"):
        await retry_transient(duplicate, what="dup", policy=NO_WAIT, rng=random.Random(1))
    assert calls == 1

    async def refuse() -> None:
        raise LookupError("not ours to wrap")

    with pytest.raises(LookupError):
        await retry_transient(refuse, what="refuse", policy=NO_WAIT, rng=random.Random(1))


def test_backoff_grows_to_its_cap_with_bounded_jitter() -> None:
    policy = RetryPolicy(attempts=10, base_delay_s=0.1, max_delay_s=1.0)
    rng = random.Random(7)
    for failures, ceiling in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)):
        delay_s = policy.delay_s(failures, rng)
        assert ceiling / 2 <= delay_s <= ceiling
