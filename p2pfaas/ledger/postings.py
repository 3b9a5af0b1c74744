"""Accounts and double-entry transfers, the primitives every ledger write is made of: the
well-known accounts, `ensure_account`, `post_transfer` and `move` (balances change only together
with the entries that explain them), the amount bounds, and the errors they raise.
Lock order and idempotency: see `p2pfaas.ledger.store`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db.retry import mysql_error_code
from p2pfaas.db.schema import accounts, entries, transfers
from p2pfaas.db.upsert import insert_ignore
from p2pfaas.errors import LocalError, Refused
from p2pfaas.ledger.policy import AccountKind
from p2pfaas.money import MAX_AMOUNT_MICRO

FEES_ACCOUNT = "anchor:fees"


GRANTS_ACCOUNT = "world:grants"


PAID_OUT_ACCOUNT = "world:payouts"


PAYOUTS_CLEARING = "clearing:payouts"


class InsufficientFunds(Refused):
    """A transfer would take an account below zero."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=402)


class AmountOutOfRange(Refused, LocalError):
    """An amount, or the balance a transfer would leave, is outside +-`money.MAX_AMOUNT_MICRO`.

    The caller's input is at fault (a LocalError); on the wire it answers HTTP 422.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=422)


class IdempotencyConflict(Refused, LocalError):
    """An idempotency reference was reused for a different operation (HTTP 409)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=409)


def check_transfer_amount(what: str, amount_micro: int) -> None:
    """Raise `AmountOutOfRange` unless `amount_micro` is an int within 1..MAX_AMOUNT_MICRO."""
    if type(amount_micro) is not int or not 0 < amount_micro <= MAX_AMOUNT_MICRO:
        raise AmountOutOfRange(f"{what}: amount must be within 1..{MAX_AMOUNT_MICRO}, got {amount_micro!r}")


@dataclass(frozen=True)
class AccountRow:
    account_id: int
    name: str
    kind: str
    owner_user_id: int | None
    balance_micro: int


async def ensure_account(
    connection: AsyncConnection, name: str, kind: AccountKind, *, owner_user_id: int | None, now: float
) -> int:
    """The id of the account called `name`, created (empty) if it does not exist yet."""
    row = {
        "name": name,
        "kind": str(kind),
        "owner_user_id": owner_user_id,
        "balance_micro": 0,
        "created_at": now,
    }
    await connection.execute(insert_ignore(connection.dialect.name, accounts, row, key=["name"]))
    account_id = await connection.scalar(sa.select(accounts.c.account_id).where(accounts.c.name == name))
    assert account_id is not None, name
    return int(account_id)


async def post_transfer(
    connection: AsyncConnection, *, kind: str, ref: str, memo: str, legs: Mapping[int, int], now: float
) -> int | None:
    """Move money: `legs` maps account id to a signed amount; they must sum to zero.

    Returns the new transfer's id, or None if a transfer with `ref` exists already (a repeat).
    Raises `InsufficientFunds` (and the caller's transaction rolls back) if an account that may
    not go negative would.
    """
    try:
        result = await connection.execute(
            transfers.insert().values(kind=kind, ref=ref, memo=memo[:255], created_at=now)
        )
    except sa_exc.IntegrityError as error:
        # The unique `ref`: done before (a duplicate insert waits for, then loses to, the first).
        if not is_duplicate_key(error):
            raise
        return None
    assert result.inserted_primary_key is not None
    transfer_id = int(result.inserted_primary_key[0])
    await move(connection, transfer_id, legs, what=kind)
    return transfer_id


async def move(connection: AsyncConnection, transfer_id: int, legs: Mapping[int, int], *, what: str) -> None:
    """Write `legs` (account id -> signed amount, summing to zero) as entries of `transfer_id`.

    One conditional UPDATE changes every balance; InnoDB locks its rows in primary key order, which
    is the fixed account lock order. An account that may not go negative and would makes the
    UPDATE match fewer rows, and this raises `InsufficientFunds`; a balance that would leave
    +-MAX_AMOUNT_MICRO fails the accounts table's CHECK and this raises `AmountOutOfRange` (either
    way the caller's transaction rolls back). With every balance and every leg within the bound, no
    sum comes near BIGINT's limit (nor SQLite's, past which it silently computes in floats).
    """
    legs = {account: amount for account, amount in legs.items() if amount != 0}
    assert sum(legs.values()) == 0, legs
    if not legs:
        return
    for account, amount in legs.items():
        if type(amount) is not int or abs(amount) > MAX_AMOUNT_MICRO:
            raise AmountOutOfRange(f"{what}: {amount!r} for account {account} is beyond +-{MAX_AMOUNT_MICRO}")
    new_balance = accounts.c.balance_micro + sa.case(legs, value=accounts.c.account_id, else_=0)
    try:
        changed = await connection.execute(
            accounts.update()
            .where(accounts.c.account_id.in_(sorted(legs)))
            .where(sa.or_(new_balance >= 0, accounts.c.kind == str(AccountKind.EXTERNAL)))
            .values(balance_micro=new_balance)
        )
    except sa_exc.DBAPIError as error:  # IntegrityError on SQLite, OperationalError (4025) on MariaDB
        # The balance bound is the schema's CHECK (revision 0004); the statement changed nothing.
        if not is_check_violation(error):
            raise
        raise AmountOutOfRange(
            f"{what}: would take a balance of account(s) {sorted(legs)} beyond +-{MAX_AMOUNT_MICRO}"
        ) from None
    if changed.rowcount != len(legs):
        short = sorted(account for account, amount in legs.items() if amount < 0)
        raise InsufficientFunds(f"{what}: not enough credits in account(s) {short}")
    await connection.execute(
        entries.insert(),
        [{"transfer_id": transfer_id, "account_id": a, "amount_micro": m} for a, m in sorted(legs.items())],
    )


def grant_ref(account_id: int, ref: str) -> str:
    """The transfer reference of the operator's grant `ref` to `account_id`: refs are per account."""
    return f"grant:{account_id}:{ref}"


async def _same_as_before(
    connection: AsyncConnection, *, ref: str, legs: Mapping[int, int], what: str
) -> None:
    """Raise `IdempotencyConflict` unless the transfer already made under `ref` moved exactly `legs`."""
    query = (
        sa.select(entries.c.account_id, entries.c.amount_micro)
        .join_from(entries, transfers)
        .where(transfers.c.ref == ref)
    )
    before: dict[int, int] = {}
    for row in (await connection.execute(query)).all():
        before[int(row.account_id)] = before.get(int(row.account_id), 0) + int(row.amount_micro)
    if before != {account: amount for account, amount in legs.items() if amount}:
        raise IdempotencyConflict(
            f"{what}: reference {ref!r} was used before for a different transfer "
            f"({sorted(before.items())}, not {sorted(legs.items())}); use a new reference"
        )


def is_check_violation(error: sa_exc.DBAPIError) -> bool:
    """A CHECK constraint refused a row: MariaDB's 4025, MySQL's 3819, SQLite's "CHECK constraint failed"."""
    return mysql_error_code(error.orig) in (3819, 4025) or "CHECK constraint failed" in str(error.orig)


def is_duplicate_key(error: sa_exc.IntegrityError) -> bool:
    """MySQL's 1062 (duplicate entry) or SQLite's UNIQUE/PRIMARY KEY constraint failure."""
    if mysql_error_code(error.orig) == 1062:
        return True
    message = str(error.orig)
    return "UNIQUE constraint failed" in message or "PRIMARY KEY constraint failed" in message
