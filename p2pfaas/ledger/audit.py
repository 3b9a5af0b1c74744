"""The ledger's invariants, checked against the database: what the property and stress tests assert.

`audit(db)` returns a list of violations (empty when the books are right). It reads everything in
one transaction, so on a live anchor it is a consistent snapshot, but a slow one: it is for tests,
operators' spot checks and `p2pfaas account audit`, not for the request path.

1. Every transfer's entries sum to zero, so all balances together sum to zero.
2. Every account's balance is the sum of its entries (the cached balance never drifts).
3. No account but an external one is below zero (no lessee, hold or volunteer overdraws).
4. Each voucher's hold holds its budget, less what was settled from it, less what was released;
   what was settled never exceeds the budget.
5. Each invocation is settled once (the primary key), and what settlements paid is what the node
   and fee accounts received from settlement transfers.
6. Each payment channel (`p2pfaas.channels`) has paid no more than its lessee signed, counts only
   payments that exist (at most what the settlements on its voucher now credit its node; less only
   where a payment moved to the executor at its lower price), and draws on a known voucher.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import accounts, channels, entries, settlements, transfers, vouchers
from p2pfaas.ledger.policy import may_go_negative

__all__ = ["audit"]


async def audit(db: Database) -> list[str]:
    """Every invariant violation in the ledger, as readable sentences."""
    return await db.run(_audit, what="audit the ledger", write=False)


async def _audit(connection: AsyncConnection) -> list[str]:
    problems: list[str] = []
    rows = (await connection.execute(sa.select(accounts))).all()
    balance = {row.account_id: int(row.balance_micro) for row in rows}
    kind = {row.account_id: row.kind for row in rows}

    if (total := sum(balance.values())) != 0:
        problems.append(f"balances sum to {total}, not 0")
    for account_id, amount in balance.items():
        if amount < 0 and not may_go_negative(kind[account_id]):
            problems.append(f"account {account_id} ({kind[account_id]}) is negative: {amount}")

    by_account: dict[int, int] = defaultdict(int)
    by_transfer: dict[int, int] = defaultdict(int)
    settled_in: dict[int, int] = defaultdict(int)  # account -> what settle transfers gave or took
    released: dict[int, int] = defaultdict(int)  # hold account -> what release transfers took
    query = sa.select(entries.c.transfer_id, entries.c.account_id, entries.c.amount_micro, transfers.c.kind)
    for entry in (await connection.execute(query.join_from(entries, transfers))).all():
        amount = int(entry.amount_micro)
        by_account[entry.account_id] += amount
        by_transfer[entry.transfer_id] += amount
        if entry.kind == "settle":
            settled_in[entry.account_id] += amount
        elif entry.kind == "release":
            released[entry.account_id] += amount
    for transfer_id, total in by_transfer.items():
        if total != 0:
            problems.append(f"transfer {transfer_id}'s entries sum to {total}")
    for account_id, amount in balance.items():
        if by_account.get(account_id, 0) != amount:
            problems.append(
                f"account {account_id} holds {amount} but its entries sum to {by_account[account_id]}"
            )

    charged: dict[str, int] = defaultdict(int)
    credited: dict[tuple[str, str], int] = defaultdict(int)  # (voucher, node) -> settled prices
    paid_to_nodes = fees = 0
    for row in (await connection.execute(sa.select(settlements))).all():
        credited[(row.voucher_id, row.node_id)] += int(row.price_micro)
        charged[row.voucher_id] += int(row.price_micro) + int(row.fee_micro)
        paid_to_nodes += int(row.price_micro)
        fees += int(row.fee_micro)
    for voucher in (await connection.execute(sa.select(vouchers))).all():
        spent = charged.pop(voucher.voucher_id, 0)
        if spent > voucher.budget_micro:
            problems.append(f"voucher {voucher.voucher_id} spent {spent} of a {voucher.budget_micro} budget")
        hold = voucher.hold_account_id
        expected = voucher.budget_micro - spent + released.get(hold, 0)
        if balance.get(hold) != expected:
            problems.append(
                f"voucher {voucher.voucher_id}'s hold holds {balance.get(hold)}, expected {expected}"
            )
        if (hold_paid := -settled_in.get(hold, 0)) != spent:
            problems.append(
                f"voucher {voucher.voucher_id}: settlements say {spent}, its hold paid {hold_paid}"
            )
    for voucher_id in charged:
        problems.append(f"settlements draw on unknown voucher {voucher_id}")
    known = set(await connection.scalars(sa.select(vouchers.c.voucher_id)))
    for lane in (await connection.execute(sa.select(channels))).all():
        name = f"channel of voucher {lane.voucher_id} to node {lane.node_id}"
        if not 0 <= lane.paid_micro <= lane.signed_micro:
            problems.append(f"{name} paid {lane.paid_micro} of {lane.signed_micro} signed")
        if lane.paid_micro > credited.get((lane.voucher_id, lane.node_id), 0):
            problems.append(
                f"{name} counts {lane.paid_micro} paid, but settlements credit the node "
                f"{credited.get((lane.voucher_id, lane.node_id), 0)}"
            )
        if lane.voucher_id not in known:
            problems.append(f"{name} draws on an unknown voucher")
    received = sum(amount for account_id, amount in settled_in.items() if amount > 0)
    if received != paid_to_nodes + fees:
        problems.append(f"settlements paid {paid_to_nodes}+{fees} but accounts received {received}")
    return problems
