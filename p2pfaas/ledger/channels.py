"""Payment-channel rows (`p2pfaas.channels`, revision 0006), for `settlement`: per voucher and node,
the highest total the lessee signed (`signed_micro`) and what the node's paid receipts took of it
(`paid_micro`). Every function runs inside a transaction that holds the voucher's row lock
(`lock_vouchers`), so for one voucher these rows move one transaction at a time. The rows rise
with the tickets a node sends with its receipts, or that the lessee hands the anchor itself
(`record_tickets`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.channels import channel_problem
from p2pfaas.db import Database
from p2pfaas.db.schema import accounts, channels, vouchers
from p2pfaas.errors import NotFound, SignatureError
from p2pfaas.ledger.policy import VoucherView
from p2pfaas.messages import ChannelTicket

__all__ = ["Lane", "add_paid", "lock_channels", "lock_vouchers", "raise_channels", "record_tickets"]


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
) -> tuple[dict[str, int], set[str]]:
    """Raise node `node_id`'s channel rows to the tickets `offered` that the vouchers' lessees
    signed (older or lower ones change nothing); return what each channel has signed and unpaid,
    and the vouchers whose row rose."""
    rows = await connection.execute(
        sa.select(channels.c.voucher_id, channels.c.seq, channels.c.signed_micro, channels.c.paid_micro)
        .where(channels.c.node_id == node_id, channels.c.voucher_id.in_(sorted(views)))
        .order_by(channels.c.voucher_id)
        .with_for_update()
    )
    lanes = {row.voucher_id: Lane(int(row.signed_micro), int(row.paid_micro)) for row in rows}
    room: dict[str, int] = {}
    raised: set[str] = set()
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
            raised.add(voucher_id)
        elif ticket is not None and lane is not None and ticket.total_micro > lane.signed:
            await connection.execute(
                channels.update()
                .where(channels.c.voucher_id == voucher_id, channels.c.node_id == node_id)
                .values(seq=ticket.seq, signed_micro=ticket.total_micro, updated_at=now)
            )
            lane = Lane(ticket.total_micro, lane.paid)
            raised.add(voucher_id)
        room[voucher_id] = 0 if lane is None else lane.signed - lane.paid
    return room, raised


async def add_paid(
    connection: AsyncConnection, voucher_id: str, node_id: str, amount: int, now: float
) -> None:
    await connection.execute(
        channels.update()
        .where(channels.c.voucher_id == voucher_id, channels.c.node_id == node_id)
        .values(paid_micro=channels.c.paid_micro + amount, updated_at=now)
    )


async def lock_vouchers(
    connection: AsyncConnection, voucher_ids: Iterable[str]
) -> tuple[dict[str, VoucherView], dict[str, int]]:
    """Lock the voucher rows, then their holds (in id order), and read them: the views and the
    hold account of each voucher that exists."""
    # Each by primary key only: a join here may scan (and so lock) unrelated accounts, such as
    # the fee account every batch updates.
    locked = (
        await connection.execute(
            sa.select(
                vouchers.c.voucher_id,
                vouchers.c.lessee_key,
                vouchers.c.expires_at,
                vouchers.c.state,
                vouchers.c.hold_account_id,
            )
            .where(vouchers.c.voucher_id.in_(sorted(set(voucher_ids))))
            .order_by(vouchers.c.voucher_id)
            .with_for_update()
        )
    ).all()
    hold_ids = sorted(int(row.hold_account_id) for row in locked)
    held_rows = await connection.execute(
        sa.select(accounts.c.account_id, accounts.c.balance_micro)
        .where(accounts.c.account_id.in_(hold_ids))
        .order_by(accounts.c.account_id)
        .with_for_update()
    )
    held = {int(account_id): int(balance) for account_id, balance in held_rows}
    views = {
        row.voucher_id: VoucherView(
            row.voucher_id,
            bytes(row.lessee_key),
            int(held[row.hold_account_id]),
            row.expires_at,
            row.state == "open",
        )
        for row in locked
    }
    return views, {row.voucher_id: int(row.hold_account_id) for row in locked}


async def record_tickets(db: Database, tickets: Sequence[ChannelTicket], *, now: float) -> int:
    """Raise the channel rows to `tickets` that a lessee hands the anchor itself (when it could not
    reach the node, or on closing), so that a node is paid for results whose ticket never reached
    it. Each ticket must verify and be signed by its voucher's lessee; older or lower ones change
    nothing. Returns how many rows rose."""
    best: dict[tuple[str, str], ChannelTicket] = {}
    for ticket in tickets:
        problem = channel_problem(ticket, node_id=ticket.node_id)
        if problem is not None:
            raise SignatureError(f"channel ticket for voucher {ticket.voucher_id[:64]!r} {problem}")
        key = (ticket.voucher_id, ticket.node_id)
        if key not in best or ticket.total_micro > best[key].total_micro:
            best[key] = ticket

    by_node: dict[str, dict[str, ChannelTicket]] = {}
    for (voucher_id, node_id), ticket in best.items():
        by_node.setdefault(node_id, {})[voucher_id] = ticket

    async def work(connection: AsyncConnection) -> int:
        views, _ = await lock_vouchers(connection, {voucher_id for voucher_id, _ in best})
        for voucher_id, node_id in sorted(best):
            view = views.get(voucher_id)
            if view is None:
                raise NotFound(f"no voucher {voucher_id[:64]!r}")
            if best[voucher_id, node_id].signer != view.lessee_key:
                raise SignatureError(f"channel ticket for voucher {voucher_id[:64]!r} is not its lessee's")
        raised = 0
        for node_id, offered in sorted(by_node.items()):  # node by node, in the order settlement locks
            mine = {voucher_id: views[voucher_id] for voucher_id in offered}
            raised += len((await raise_channels(connection, node_id, mine, offered, now))[1])
        return raised

    return await db.run(work, what=f"record {len(best)} channel tickets")
