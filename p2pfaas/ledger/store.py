"""The ledger store: accounts, transfers, vouchers' escrow and payouts on `p2pfaas.db.Database`.

Every method is one transaction through `Database.run` (retried through deadlocks, lock-wait
timeouts and lost connections) and is idempotent by a caller-chosen reference, so a retry after a
connection lost during COMMIT does not move money twice. Balances live in `accounts.balance_micro`
and change only together with the entries that explain them (`post_transfer`).

Concurrency on MariaDB's default REPEATABLE READ: balances change by conditional updates
(`balance + delta >= 0` unless the account is external), and a transaction locks rows in one fixed
order: voucher rows (by id), then the transfer's unique reference, then accounts by ascending id.
Entries are inserted after their accounts are locked, so the foreign-key checks' shared locks
never upgrade. Settlement of receipt batches is in `settlement.py`; invariant checks in `audit.py`.

The store reads no clock: every `now` is passed in (float seconds since the epoch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas import codec
from p2pfaas.db import Database
from p2pfaas.db.retry import mysql_error_code
from p2pfaas.db.schema import accounts, entries, payouts, settlements, transfers, vouchers
from p2pfaas.db.upsert import insert_ignore
from p2pfaas.errors import LocalError, NotFound, Refused
from p2pfaas.ledger.policy import AccountKind, PayoutState, next_payout_state
from p2pfaas.messages import Voucher
from p2pfaas.money import MAX_AMOUNT_MICRO

__all__ = [
    "FEES_ACCOUNT",
    "GRANTS_ACCOUNT",
    "AccountRow",
    "AmountOutOfRange",
    "IdempotencyConflict",
    "InsufficientFunds",
    "LedgerStore",
    "PayoutRow",
    "VoucherRow",
]

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


@dataclass(frozen=True)
class VoucherRow:
    voucher_id: str
    owner_user_id: int | None  # the lessee's
    budget_micro: int
    remaining_micro: int  # what is left in its hold
    expires_at: float
    state: str  # "open" or "closed"


@dataclass(frozen=True)
class PayoutRow:
    payout_id: str
    account_id: int
    amount_micro: int
    state: str
    destination: str


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


EARNING_KINDS = ("settle", "supersede")  # transfers that pay a node's work


async def _check_matured(
    connection: AsyncConnection, account_id: int, amount_micro: int, *, since: float
) -> None:
    """Refuse (409) taking `amount_micro` more out of `account_id` (0: it was taken already) when
    its balance would no longer cover what it earned since `since`."""
    balance = await connection.scalar(
        sa.select(accounts.c.balance_micro).where(accounts.c.account_id == account_id).with_for_update()
    )
    recent = await connection.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(entries.c.amount_micro), 0))
        .select_from(entries.join(transfers, transfers.c.transfer_id == entries.c.transfer_id))
        .where(
            entries.c.account_id == account_id,
            entries.c.amount_micro > 0,
            transfers.c.kind.in_(EARNING_KINDS),
            transfers.c.created_at >= since,
        )
    )
    payable = int(balance or 0) - int(recent or 0)
    if amount_micro > payable:
        raise Refused(
            f"only {max(0, payable)} of this account's {int(balance or 0)} micro-credits have matured "
            "(earnings can be paid out once they have stood unchallenged for the maturity period)",
            status=409,
        )


SUPERSEDE_REF = "supersede:"  # + invocation id + ":" + the node it was moved from


async def credited_account(connection: AsyncConnection, invocation_id: str) -> tuple[int, int] | None:
    """Where the payment for settled `invocation_id` is now, and how much of it: the node account
    its settlement credited (the price), or the last one a supersede moved it to (what moved).
    None if it was not settled."""
    row = (
        await connection.execute(
            sa.select(settlements.c.transfer_id, settlements.c.price_micro).where(
                settlements.c.invocation_id == invocation_id
            )
        )
    ).first()
    if row is None:
        return None
    moved = (
        await connection.execute(
            sa.select(entries.c.account_id, entries.c.amount_micro)
            .join_from(entries, transfers)
            .where(
                transfers.c.kind == "supersede",
                transfers.c.ref.startswith(f"{SUPERSEDE_REF}{invocation_id}:", autoescape=True),
                entries.c.amount_micro > 0,
            )
            .order_by(transfers.c.transfer_id.desc())
        )
    ).first()
    if moved is not None:
        return int(moved.account_id), int(moved.amount_micro)
    fees = sa.select(accounts.c.account_id).where(accounts.c.name == FEES_ACCOUNT).scalar_subquery()
    # A settle transfer credits one node account (with the batch's total) and the fee account.
    node = await connection.scalar(
        sa.select(entries.c.account_id).where(
            entries.c.transfer_id == row.transfer_id, entries.c.amount_micro > 0, entries.c.account_id != fees
        )
    )
    return None if node is None else (int(node), int(row.price_micro))


async def was_paid_to(connection: AsyncConnection, invocation_id: str, node_id: str) -> bool:
    """Whether node `node_id` was paid for `invocation_id` at some point (it may have moved since)."""
    settled = await connection.scalar(
        sa.select(settlements.c.node_id).where(settlements.c.invocation_id == invocation_id)
    )
    if settled is None:
        return False
    if settled == node_id:
        return True
    moved_from = await connection.scalar(
        sa.select(transfers.c.transfer_id).where(
            transfers.c.ref == f"{SUPERSEDE_REF}{invocation_id}:{node_id}"
        )
    )
    return moved_from is not None


async def claw_back(
    connection: AsyncConnection, invocation_id: str, *, node_id: str, excess_micro: int, why: str, now: float
) -> int:
    """Return up to `excess_micro` (what a proven lie by node `node_id` overcharged) of the payment
    for `invocation_id` to the lessee's account, from the account that holds the payment now
    (the liar's, or one it was moved to); what moved (0 if `node_id` was never paid for it, or it
    was clawed back before). One transfer per invocation."""
    if not await was_paid_to(connection, invocation_id, node_id):
        return 0
    lessee = await connection.scalar(
        sa.select(vouchers.c.lessee_account_id)
        .join_from(settlements, vouchers, vouchers.c.voucher_id == settlements.c.voucher_id)
        .where(settlements.c.invocation_id == invocation_id)
    )
    held = await credited_account(connection, invocation_id)
    if lessee is None or held is None:
        return 0
    holder, amount = held
    amount = min(amount, excess_micro)
    if amount <= 0:
        return 0
    legs = {holder: -amount, int(lessee): amount}
    done = await post_transfer(
        connection, kind="clawback", ref=f"clawback:{invocation_id}", memo=why[:255], legs=legs, now=now
    )
    return 0 if done is None else amount


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


class LedgerStore:
    """Money movements that are not receipt settlement. Driven by the anchor's handlers and by tests."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- accounts ------------------------------------------------------------------------------

    async def open_account(
        self, name: str, kind: AccountKind, *, owner_user_id: int | None = None, now: float
    ) -> int:
        """The account called `name`, created if absent (idempotent)."""

        async def work(connection: AsyncConnection) -> int:
            return await ensure_account(connection, name, kind, owner_user_id=owner_user_id, now=now)

        return await self.db.run(work, what=f"open account {name}")

    async def user_account(self, user_id: int, kind: AccountKind, *, now: float) -> int:
        """The user's own spending/earning account ("user:<id>"), created on first use."""
        return await self.open_account(f"user:{user_id}", kind, owner_user_id=user_id, now=now)

    async def account(self, account_id: int) -> AccountRow:
        async def work(connection: AsyncConnection) -> AccountRow:
            row = (
                await connection.execute(accounts.select().where(accounts.c.account_id == account_id))
            ).first()
            if row is None:
                raise NotFound(f"no account {account_id}")
            return AccountRow(row.account_id, row.name, row.kind, row.owner_user_id, row.balance_micro)

        return await self.db.run(work, what="read account", write=False)

    async def accounts_of(self, owner_user_id: int) -> list[AccountRow]:
        """Every account a user owns (their own, their nodes', their vouchers' holds)."""

        async def work(connection: AsyncConnection) -> list[AccountRow]:
            query = accounts.select().where(accounts.c.owner_user_id == owner_user_id)
            rows = (await connection.execute(query.order_by(accounts.c.account_id))).all()
            return [AccountRow(r.account_id, r.name, r.kind, r.owner_user_id, r.balance_micro) for r in rows]

        return await self.db.run(work, what="list accounts", write=False)

    async def set_owner(self, account_name: str, kind: AccountKind, owner_user_id: int, *, now: float) -> int:
        """Give the account called `account_name` (created if absent) to `owner_user_id`."""

        async def work(connection: AsyncConnection) -> int:
            account_id = await ensure_account(connection, account_name, kind, owner_user_id=None, now=now)
            await connection.execute(
                accounts.update()
                .where(accounts.c.account_id == account_id)
                .values(owner_user_id=owner_user_id)
            )
            return account_id

        return await self.db.run(work, what=f"claim account {account_name}")

    # --- credits in and corrections --------------------------------------------------------------

    async def transfer(
        self, *, kind: str, ref: str, memo: str, source: str, target: int, amount_micro: int, now: float
    ) -> int | None:
        """Move `amount_micro` from the external account `source` (created if absent) to `target`.

        Grants use source GRANTS_ACCOUNT; a payment provider its own "world:payments:<name>".
        Idempotent by `ref`: returns None when the same transfer (same source, target and amount)
        was done before; raises `IdempotencyConflict` when `ref` was used for a different one, so a
        reused reference is never mistaken for a repeat that silently pays nothing.
        """
        check_transfer_amount(kind, amount_micro)

        async def work(connection: AsyncConnection) -> int | None:
            source_id = await ensure_account(
                connection, source, AccountKind.EXTERNAL, owner_user_id=None, now=now
            )
            legs = {source_id: -amount_micro, target: amount_micro}
            done = await post_transfer(connection, kind=kind, ref=ref, memo=memo, legs=legs, now=now)
            if done is None:
                await _same_as_before(connection, ref=ref, legs=legs, what=kind)
            return done

        return await self.db.run(work, what=kind)

    async def grant(
        self, *, ref: str, account_id: int, amount_micro: int, now: float, memo: str = ""
    ) -> int | None:
        """An operator gives credits out of nothing (the grants account goes negative).

        `ref` is the operator's idempotency key for a grant to this account: the same `ref` to
        another account is another grant (revision 0005 moved older refs to this form).
        """
        return await self.transfer(
            kind="grant",
            ref=grant_ref(account_id, ref),
            memo=memo,
            source=GRANTS_ACCOUNT,
            target=account_id,
            amount_micro=amount_micro,
            now=now,
        )

    async def correct(self, *, ref: str, memo: str, legs: Mapping[int, int], now: float) -> int | None:
        """An operator's correcting transfer: mistakes are fixed by new entries, never by edits.

        Idempotent by `ref` for the same legs; `IdempotencyConflict` if `ref` moved other ones.
        """

        async def work(connection: AsyncConnection) -> int | None:
            ref_ = f"correct:{ref}"
            done = await post_transfer(connection, kind="correction", ref=ref_, memo=memo, legs=legs, now=now)
            if done is None:
                await _same_as_before(connection, ref=ref_, legs=legs, what="correction")
            return done

        return await self.db.run(work, what="correction")

    # --- vouchers ------------------------------------------------------------------------------

    async def open_voucher(
        self, voucher: Voucher, *, lessee_account_id: int, owner_user_id: int, now: float
    ) -> Voucher:
        """Move `voucher.budget_micro` from the lessee's account into a new hold for the signed `voucher`.

        Idempotent by `voucher.voucher_id`: a repeat returns the voucher issued the first time (a
        client that lost the answer asks again with the same request id and gets the same voucher).
        Raises `InsufficientFunds`.
        """

        async def work(connection: AsyncConnection) -> Voucher:
            hold = await ensure_account(
                connection,
                f"hold:{voucher.voucher_id}",
                AccountKind.HOLD,
                owner_user_id=owner_user_id,
                now=now,
            )
            legs = {lessee_account_id: -voucher.budget_micro, hold: voucher.budget_micro}
            ref = f"voucher:{voucher.voucher_id}"
            if await post_transfer(connection, kind="hold", ref=ref, memo="voucher hold", legs=legs, now=now):
                await connection.execute(
                    vouchers.insert().values(
                        voucher_id=voucher.voucher_id,
                        lessee_account_id=lessee_account_id,
                        hold_account_id=hold,
                        lessee_key=voucher.lessee_key,
                        budget_micro=voucher.budget_micro,
                        expires_at=voucher.expires_at,
                        state="open",
                        signed=codec.encode(voucher),
                        created_at=now,
                    )
                )
                return voucher
            query = sa.select(vouchers.c.signed).where(vouchers.c.voucher_id == voucher.voucher_id)
            signed = await connection.scalar(query)
            assert signed is not None, voucher.voucher_id  # written with its hold transfer
            return codec.decode_as(Voucher, bytes(signed))

        return await self.db.run(work, what="open voucher")

    async def release_expired(self, *, now: float, grace_s: float, limit: int = 100) -> list[str]:
        """Close vouchers that expired more than `grace_s` ago and return what is left to their lessees.

        `grace_s` leaves time for receipts of invocations run just before expiry to arrive; a
        receipt that comes after the release is refused (VOUCHER_CLOSED), never paid from nothing.
        Returns the ids of the vouchers closed by this call.
        """

        async def work(connection: AsyncConnection) -> list[str]:
            due = (
                sa.select(vouchers.c.voucher_id, vouchers.c.lessee_account_id, vouchers.c.hold_account_id)
                .where(vouchers.c.state == "open", vouchers.c.expires_at + grace_s <= now)
                .order_by(vouchers.c.voucher_id)
                .limit(limit)
                .with_for_update()
            )
            closed: list[str] = []
            for row in (await connection.execute(due)).all():
                left = int(
                    await connection.scalar(
                        sa.select(accounts.c.balance_micro)
                        .where(accounts.c.account_id == row.hold_account_id)
                        .with_for_update()
                    )
                    or 0
                )
                if left:
                    legs = {row.hold_account_id: -left, row.lessee_account_id: left}
                    ref = f"release:{row.voucher_id}"
                    await post_transfer(
                        connection, kind="release", ref=ref, memo="voucher expired", legs=legs, now=now
                    )
                await connection.execute(
                    vouchers.update().where(vouchers.c.voucher_id == row.voucher_id).values(state="closed")
                )
                closed.append(row.voucher_id)
            return closed

        return await self.db.run(work, what="release expired vouchers")

    async def voucher(self, voucher_id: str) -> VoucherRow | None:
        """The voucher `voucher_id` and what is left of it, or None if there is no such voucher."""

        async def work(connection: AsyncConnection) -> VoucherRow | None:
            query = sa.select(
                vouchers.c.voucher_id,
                accounts.c.owner_user_id,
                vouchers.c.budget_micro,
                accounts.c.balance_micro,
                vouchers.c.expires_at,
                vouchers.c.state,
            ).select_from(vouchers.join(accounts, accounts.c.account_id == vouchers.c.hold_account_id))
            row = (await connection.execute(query.where(vouchers.c.voucher_id == voucher_id))).first()
            if row is None:
                return None
            return VoucherRow(
                row.voucher_id,
                row.owner_user_id,
                int(row.budget_micro),
                int(row.balance_micro),
                float(row.expires_at),
                str(row.state),
            )

        return await self.db.run(work, what="read voucher", write=False)

    async def voucher_remaining(self, voucher_id: str) -> tuple[int, str]:
        """(what is left in the voucher's hold, its state)."""
        row = await self.voucher(voucher_id)
        if row is None:
            raise NotFound(f"no voucher {voucher_id}")
        return row.remaining_micro, row.state

    # --- payouts -------------------------------------------------------------------------------

    async def request_payout(
        self,
        *,
        payout_id: str,
        account_id: int,
        amount_micro: int,
        destination: str,
        now: float,
        mature_after_s: float = 0.0,
    ) -> bool:
        """Move earnings into the payout clearing account, pending. False if `payout_id` exists for
        this account and amount; `IdempotencyConflict` if it exists for another.

        Only matured earnings may leave: what settlements paid into the account in the last
        `mature_after_s` stays until then, so that a payment found to be a lie (an overcharge, a
        call the node passed on) can still be clawed back (`claw_back`). Refused (409) beyond that.
        """
        check_transfer_amount("payout", amount_micro)

        async def work(connection: AsyncConnection) -> bool:
            clearing = await ensure_account(
                connection, PAYOUTS_CLEARING, AccountKind.CLEARING, owner_user_id=None, now=now
            )
            legs = {account_id: -amount_micro, clearing: amount_micro}
            ref = f"payout:{payout_id}"
            if (
                await post_transfer(connection, kind="payout", ref=ref, memo=destination, legs=legs, now=now)
                is None
            ):
                await _same_as_before(connection, ref=ref, legs=legs, what="payout")
                return False
            if (
                mature_after_s > 0
            ):  # after the move, under its row lock: what is left must cover the unmatured
                await _check_matured(connection, account_id, 0, since=now - mature_after_s)
            await connection.execute(
                payouts.insert().values(
                    payout_id=payout_id,
                    account_id=account_id,
                    amount_micro=amount_micro,
                    state=str(PayoutState.PENDING),
                    destination=destination[:255],
                    created_at=now,
                    updated_at=now,
                )
            )
            return True

        return await self.db.run(work, what="request payout")

    async def settle_payout(self, payout_id: str, state: PayoutState, *, now: float) -> PayoutRow:
        """Record the payment provider's answer: paid (money leaves) or failed (money returns)."""

        async def work(connection: AsyncConnection) -> PayoutRow:
            query = payouts.select().where(payouts.c.payout_id == payout_id).with_for_update()
            row = (await connection.execute(query)).first()
            if row is None:
                raise NotFound(f"no payout {payout_id}")
            if row.state == str(state):
                return _payout_row(row)  # a repeat of the same answer
            next_payout_state(row.state, state)
            clearing = await ensure_account(
                connection, PAYOUTS_CLEARING, AccountKind.CLEARING, owner_user_id=None, now=now
            )
            if state is PayoutState.PAID:
                target = await ensure_account(
                    connection, PAID_OUT_ACCOUNT, AccountKind.EXTERNAL, owner_user_id=None, now=now
                )
            else:
                target = row.account_id
            legs = {clearing: -row.amount_micro, target: row.amount_micro}
            ref = f"payout-{state}:{payout_id}"
            await post_transfer(connection, kind=f"payout-{state}", ref=ref, memo="", legs=legs, now=now)
            await connection.execute(
                payouts.update()
                .where(payouts.c.payout_id == payout_id)
                .values(state=str(state), updated_at=now)
            )
            return PayoutRow(row.payout_id, row.account_id, row.amount_micro, str(state), row.destination)

        return await self.db.run(work, what="settle payout")

    async def payout(self, payout_id: str) -> PayoutRow:
        async def work(connection: AsyncConnection) -> PayoutRow:
            row = (await connection.execute(payouts.select().where(payouts.c.payout_id == payout_id))).first()
            if row is None:
                raise NotFound(f"no payout {payout_id}")
            return _payout_row(row)

        return await self.db.run(work, what="read payout", write=False)


def _payout_row(row: sa.Row[tuple[object, ...]]) -> PayoutRow:
    return PayoutRow(row.payout_id, row.account_id, row.amount_micro, row.state, row.destination)
