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
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas import codec
from p2pfaas.db import Database
from p2pfaas.db.schema import accounts, payouts, vouchers
from p2pfaas.errors import NotFound
from p2pfaas.ledger.earnings import (
    check_matured,
)
from p2pfaas.ledger.policy import AccountKind, PayoutState, next_payout_state
from p2pfaas.ledger.postings import (
    GRANTS_ACCOUNT,
    PAID_OUT_ACCOUNT,
    PAYOUTS_CLEARING,
    AccountRow,
    _same_as_before,
    check_transfer_amount,
    ensure_account,
    grant_ref,
    post_transfer,
)
from p2pfaas.messages import Voucher

__all__ = ["LedgerStore", "PayoutRow", "VoucherRow"]


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

    async def own_accounts(self, account_id: int, user_id: int) -> list[AccountRow]:
        """A caller's own account first (`account_id`), then every other that user owns."""
        own = await self.account(account_id)
        return [own, *(row for row in await self.accounts_of(user_id) if row.account_id != own.account_id)]

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
                await check_matured(connection, account_id, 0, since=now - mature_after_s)
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
