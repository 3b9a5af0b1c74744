"""Payment-channel rows (`p2pfaas.channels`, revision 0006), for `settlement`: per voucher and node,
the highest total the lessee signed (`signed_micro`) and what the node's paid receipts took of it
(`paid_micro`). Every function runs inside a settlement transaction that holds the voucher's row
lock, so for one voucher these rows move one transaction at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db.schema import channels
from p2pfaas.ledger.policy import VoucherView
from p2pfaas.messages import ChannelTicket

__all__ = ["Lane", "add_paid", "lock_channels", "raise_channels"]


@dataclass(frozen=True)
class Lane:
    signed: int
    paid: int


async def lock_channels(
    connection: AsyncConnection, voucher_id: str, node_ids: Sequence[str]
) -> dict[str, Lane]:
    rows = await connection.execute(
        sa.select(channels.c.node_id, channels.c.signed_micro, channels.c.paid_micro)
        .where(channels.c.voucher_id == voucher_id, channels.c.node_id.in_(sorted(set(node_ids))))
        .order_by(channels.c.node_id)
        .with_for_update()
    )
    return {row.node_id: Lane(int(row.signed_micro), int(row.paid_micro)) for row in rows}


async def raise_channels(
    connection: AsyncConnection,
    node_id: str,
    views: Mapping[str, VoucherView],
    offered: Mapping[str, ChannelTicket],
    now: float,
) -> dict[str, int]:
    """Raise node `node_id`'s channel rows to the tickets `offered` that the vouchers' lessees
    signed (older or lower ones change nothing); return what each channel has signed and unpaid."""
    rows = await connection.execute(
        sa.select(channels.c.voucher_id, channels.c.seq, channels.c.signed_micro, channels.c.paid_micro)
        .where(channels.c.node_id == node_id, channels.c.voucher_id.in_(sorted(views)))
        .order_by(channels.c.voucher_id)
        .with_for_update()
    )
    lanes = {row.voucher_id: Lane(int(row.signed_micro), int(row.paid_micro)) for row in rows}
    room: dict[str, int] = {}
    for voucher_id, view in sorted(views.items()):
        lane = lanes.get(voucher_id)
        ticket = offered.get(voucher_id)
        if ticket is not None and ticket.signer != view.lessee_key:
            ticket = None  # signed by someone else than the voucher's lessee: worth nothing
        if ticket is not None and lane is None:
            await connection.execute(
                channels.insert().values(
                    voucher_id=voucher_id,
                    node_id=node_id,
                    seq=ticket.seq,
                    signed_micro=ticket.total_micro,
                    paid_micro=0,
                    updated_at=now,
                )
            )
            lane = Lane(ticket.total_micro, 0)
        elif ticket is not None and lane is not None and ticket.total_micro > lane.signed:
            await connection.execute(
                channels.update()
                .where(channels.c.voucher_id == voucher_id, channels.c.node_id == node_id)
                .values(seq=ticket.seq, signed_micro=ticket.total_micro, updated_at=now)
            )
            lane = Lane(ticket.total_micro, lane.paid)
        room[voucher_id] = 0 if lane is None else lane.signed - lane.paid
    return room


async def add_paid(
    connection: AsyncConnection, voucher_id: str, node_id: str, amount: int, now: float
) -> None:
    await connection.execute(
        channels.update()
        .where(channels.c.voucher_id == voucher_id, channels.c.node_id == node_id)
        .values(paid_micro=channels.c.paid_micro + amount, updated_at=now)
    )
