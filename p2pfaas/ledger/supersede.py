"""Moving a payment to the node that ran the call, from a forwarder that billed it first.

A payee that forwarded an invocation and also billed it was paid first (its receipt arrived
first): when the executor's receipt arrives with a delegation signed by that payee, the payee has
signed that it passed the call on, so `supersede` moves that payment (within the lessee's cap and
the executor's channel) from the payee's earnings to the executor's, and gives the payee's
channel back the room it used. `Settler.settle_receipts` calls it for receipts refused as
duplicates that carry delegations.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import settlements, vouchers
from p2pfaas.identity import PublicKey
from p2pfaas.ledger.channels import add_paid, lock_channels
from p2pfaas.ledger.earnings import SUPERSEDE_REF, credited_account
from p2pfaas.ledger.postings import InsufficientFunds, post_transfer
from p2pfaas.messages import Receipt

__all__ = ["UNSIGNED_MOVE", "supersede"]

log = logging.getLogger(__name__)

UNSIGNED_MOVE = -1  # `supersede`'s answer when the executor's channel does not cover the move yet


async def supersede(
    db: Database, node_id: str, executor_account: int, receipt: Receipt, *, now: float
) -> int | None:
    """Move the payment of `receipt`'s invocation to node `node_id` (its executor) from a node
    that billed it although it signed one of the receipt's delegations; what moved, or None
    when the payment stays (it went to a node that did not pass the call on, or to this one),
    or UNSIGNED_MOVE when the executor's channel does not cover it yet.

    The executor gets at most its own receipt's price; the rest of what the voucher paid goes
    back to the lessee. The money is taken from the account the payment went into (whoever
    owns it now), in the same transaction that reads where it went."""
    forwarders = {PublicKey(hop.signer).key_id for hop in receipt.delegations}

    async def work(connection: AsyncConnection) -> int | None:
        row = (
            await connection.execute(
                sa.select(settlements.c.node_id, settlements.c.price_micro, vouchers.c.lessee_account_id)
                .select_from(settlements.join(vouchers, vouchers.c.voucher_id == settlements.c.voucher_id))
                .where(settlements.c.invocation_id == receipt.invocation_id)
                .with_for_update()
            )
        ).first()
        if row is None or row.node_id == node_id or row.node_id not in forwarders:
            return None
        held = await credited_account(connection, receipt.invocation_id)
        if held is None or held[0] == executor_account:
            return None
        holder, paid = held  # what the voucher paid for it (within the lessee's cap), or moved since
        moved = min(paid, receipt.price_micro)
        lanes = await lock_channels(connection, receipt.voucher_id, [node_id, row.node_id])
        mine = lanes.get(node_id)
        if mine is None or mine.signed - mine.paid < moved:
            return UNSIGNED_MOVE  # the lessee has not signed for this result of the executor yet
        memo = f"node {row.node_id} forwarded {receipt.invocation_id} to {node_id} and billed it"
        ref = f"{SUPERSEDE_REF}{receipt.invocation_id}:{row.node_id}"
        legs = {holder: -moved, executor_account: moved}
        if await post_transfer(connection, kind="supersede", ref=ref, memo=memo, legs=legs, now=now) is None:
            return None  # moved from that node before
        if paid > moved:  # the executor charged less than was billed: the rest is the lessee's
            refund = {holder: moved - paid, int(row.lessee_account_id): paid - moved}
            await post_transfer(
                connection, kind="refund", ref=f"refund:{ref}", memo=memo, legs=refund, now=now
            )
        await connection.execute(
            settlements.update()
            .where(settlements.c.invocation_id == receipt.invocation_id)
            .values(node_id=node_id, result_sha256=receipt.result_sha256)
        )
        await add_paid(connection, receipt.voucher_id, node_id, moved, now)
        if row.node_id in lanes:
            await add_paid(connection, receipt.voucher_id, row.node_id, -int(row.price_micro), now)
        return moved

    try:
        return await db.run(work, what=f"supersede {receipt.invocation_id}")
    except InsufficientFunds as error:  # the forwarder was paid out already: it keeps its debt
        log.error("cannot move the payment of %s to its executor: %s", receipt.invocation_id, error)
        return None
