"""Channel rounds: the anchor pays each payment channel the rest of what its lessee signed.

Receipts are paid as they arrive, within what the lessee signed on the node's channel and is not
paid yet (`settlement`). Whatever the lessee signed that no receipt took would stay unpaid: the node
stopped or vanished before the ticket reached it (the lessee handed the anchor the ticket instead),
its receipt was given up, or a receipt the lessee never signed for (the losing copy of a hedged
call) took the room of one it did sign for. A round pays that rest to the node: one settlement row
per channel and round, `invocation_id` `rest_id(...)`, from the voucher's hold, with the anchor's
fee, under the voucher's lock and within the channel's signed room read under it, so a node is
paid what its lessee signed for it, never more (the row's CHECK, as for receipts).

A channel is due once it has been quiet for `quiet_s` (no ticket raised it, no receipt was paid
from it), so receipts on their way are paid as receipts first; and once its voucher has expired,
so that the release (`LedgerStore.release_expired`, after its grace) returns to the lessee only what
it did not sign away. The ticket's total is the lessee's signed word of what it owes that node.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import accounts, channels, vouchers
from p2pfaas.errors import StorageError
from p2pfaas.ledger.policy import MICRO, REST_PREFIX, FeePolicy, ReceiptClaim
from p2pfaas.ledger.settlement import Settler

__all__ = ["DEFAULT_QUIET_S", "REST_PREFIX", "affordable_micro", "rest_id", "settle_rests"]

log = logging.getLogger(__name__)

DEFAULT_QUIET_S = 60.0  # a channel this long without a ticket or a paid receipt has its rest paid
ROUND_PAGE = 256  # channels read per query


def rest_id(voucher_id: str, node_id: str, signed_micro: int) -> str:
    """The settlement id of the rest of channel (voucher, node) up to what its lessee signed: 64
    characters whatever the inputs, and a new one whenever the signed total rises."""
    digest = hashlib.sha256(f"{voucher_id}\0{node_id}\0{signed_micro}".encode()).hexdigest()
    return REST_PREFIX + digest[:61]


def affordable_micro(rest_micro: int, hold_micro: int, fees: FeePolicy) -> int:
    """The most of `rest_micro` whose price and fee a hold of `hold_micro` can pay."""
    amount = min(rest_micro, hold_micro * MICRO // (MICRO + fees.fee_ppm))
    while amount > 0 and fees.charge_micro(amount) > hold_micro:  # the fee rounds up: a step or two
        amount -= 1
    return max(amount, 0)


async def _due(
    db: Database, *, now: float, quiet_s: float, after: tuple[str, str], limit: int
) -> Sequence[Any]:
    """The next `limit` due channels past `after` (node id, voucher id), with their hold's balance."""
    node_after, voucher_after = after

    async def work(connection: AsyncConnection) -> Sequence[Any]:
        query = (
            sa.select(
                channels.c.voucher_id,
                channels.c.node_id,
                channels.c.signed_micro,
                channels.c.paid_micro,
                vouchers.c.lessee_key,
                vouchers.c.expires_at,
                accounts.c.balance_micro,
            )
            .select_from(
                channels.join(vouchers, vouchers.c.voucher_id == channels.c.voucher_id).join(
                    accounts, accounts.c.account_id == vouchers.c.hold_account_id
                )
            )
            .where(
                channels.c.signed_micro > channels.c.paid_micro,
                vouchers.c.state == "open",
                accounts.c.balance_micro > 0,  # a dry hold pays nothing: not read again every round
                sa.or_(channels.c.updated_at <= now - quiet_s, vouchers.c.expires_at <= now),
                sa.or_(
                    channels.c.node_id > node_after,
                    sa.and_(channels.c.node_id == node_after, channels.c.voucher_id > voucher_after),
                ),
            )
            .order_by(channels.c.node_id, channels.c.voucher_id)
            .limit(limit)
        )
        return (await connection.execute(query)).all()

    return await db.run(work, what="find channels with a rest to pay", write=False)


async def settle_rests(settler: Settler, *, now: float, quiet_s: float = DEFAULT_QUIET_S) -> int:
    """One round: pay every due channel its rest, one pass over them in (node, voucher) order,
    `ROUND_PAGE` at a time; returns the node price paid in all."""
    paid_micro = 0
    after = ("", "")
    hold_left: dict[str, int] = {}  # per voucher: its hold, less what this round has paid from it
    while True:
        rows = await _due(settler.db, now=now, quiet_s=quiet_s, after=after, limit=ROUND_PAGE)
        if not rows:
            return paid_micro
        after = (rows[-1].node_id, rows[-1].voucher_id)
        by_node: dict[str, list[Any]] = {}
        for row in rows:
            by_node.setdefault(row.node_id, []).append(row)
        for node_id, node_rows in by_node.items():
            # A voucher's channels with several nodes share its hold, and the rows were all read
            # before any was paid: each node's rests are sized from what the paid ones left.
            claims = []
            for row in node_rows:
                hold = min(int(row.balance_micro), hold_left.get(row.voucher_id, int(row.balance_micro)))
                amount = affordable_micro(int(row.signed_micro) - int(row.paid_micro), hold, settler.fees)
                if amount > 0:
                    claims.append(
                        ReceiptClaim(
                            invocation_id=rest_id(row.voucher_id, row.node_id, int(row.signed_micro)),
                            voucher_id=row.voucher_id,
                            lessee_key=bytes(row.lessee_key),
                            price_micro=amount,
                            issued_at=min(now, float(row.expires_at)),  # signed while it was valid
                        )
                    )
                    hold_left[row.voucher_id] = hold
            if not claims:
                continue
            try:
                done = await settler.settle_rests(node_id, claims, now=now)
            except StorageError as error:  # one node's rests must not stop the others, or the release
                log.warning("paying the rests of node %s failed: %s", node_id[:12], error)
                continue
            paid_micro += done.paid_micro
            for claim in claims:
                if claim.invocation_id in done.paid:  # only what was paid leaves the hold
                    hold_left[claim.voucher_id] -= settler.fees.charge_micro(claim.price_micro)
                else:  # a receipt took the room first: next round
                    log.info(
                        "channel rest %s not paid: %s",
                        claim.invocation_id,
                        done.refused.get(claim.invocation_id),
                    )
        if len(rows) < ROUND_PAGE:
            return paid_micro
