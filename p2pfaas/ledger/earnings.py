"""What a node earned for an invocation, and taking it back: which account a settlement credited,
whether an invocation was paid to a node, the maturing of earnings before they can leave, and the
claw-back of a proven lie from the account the payment went into.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db.schema import accounts, entries, settlements, transfers, vouchers
from p2pfaas.errors import Refused
from p2pfaas.ledger.postings import (
    FEES_ACCOUNT,
    post_transfer,
)

EARNING_KINDS = ("settle", "supersede")  # transfers that pay a node's work


async def check_matured(
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
