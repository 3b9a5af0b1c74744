"""A lessee's bill, straight from the ledger: what its vouchers paid, per function or per day; and
a volunteer's earnings (`earnings`): what its nodes were paid, per node or per day.

`usage(db, account_id, since=..., by=...)` sums the settlements drawn on the account's vouchers:
calls, CPU seconds and GB-seconds (as the nodes' signed receipts metered them) and credits (the
nodes' prices and the anchor's fee), grouped by function (`name@version` of the bundle that ran) or
by UTC day. What a channel round paid (`rounds`: results the lessee signed for whose receipts never
came) has no function: it is its own line, `(channel rests)`, with no calls. The report also says
where every credit the account put into vouchers went: `bought = spent + returned + held` (spent
on calls, returned by the release of expired vouchers, still held by open ones), the ledger's own
invariant (`audit`, 4), so the lines of a report with no `since` sum exactly to the balance's
movements into and out of vouchers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import accounts, bundles, entries, key_owners, settlements, transfers, vouchers
from p2pfaas.errors import LocalError
from p2pfaas.ledger.policy import REST_PREFIX

__all__ = ["BY", "EARNINGS_BY", "REST_LINE", "Usage", "UsageLine", "earnings", "usage"]

BY = ("function", "day")
REST_LINE = "(channel rests)"
MAX_LINES = 10_000


@dataclass(frozen=True)
class UsageLine:
    key: str  # `name@version`, a day (YYYY-MM-DD, UTC), or REST_LINE
    calls: int
    cpu_ms: int
    mb_ms: int  # peak MB x wall ms: / 1024 / 1000 for GB-seconds
    charged_micro: int  # prices and fees


@dataclass(frozen=True)
class Usage:
    lines: tuple[UsageLine, ...]
    bought_micro: int  # put into the account's vouchers, ever
    spent_micro: int  # paid from them to nodes and fees, ever
    returned_micro: int  # given back to the account when they expired
    held_micro: int  # still in open vouchers


async def usage(db: Database, account_id: int, *, since: float = 0.0, by: str = "function") -> Usage:
    """The bill of lessee account `account_id` for settlements since `since` (wall time), summed by
    the database (a lessee of a million calls is a few lines, not a million rows, to the anchor)."""
    if by not in BY:
        raise LocalError(f"usage is by {' or '.join(BY)}, not {by[:32]!r}")

    async def work(connection: AsyncConnection) -> Usage:
        mine = sa.select(vouchers.c.voucher_id).where(vouchers.c.lessee_account_id == account_id)
        key = _utc_day(db.dialect, settlements.c.settled_at) if by == "day" else settlements.c.digest
        charged = settlements.c.price_micro + settlements.c.fee_micro
        rows = await _grouped(connection, settlements.c.voucher_id.in_(mine), key, charged, since=since)
        names = await _names(connection, [row.key for row in rows if by == "function" and row.key])
        lines = _lines(rows, lambda row: _line_key(bool(row.rest), row.key, by, names))
        return Usage(lines, *await _movements(connection, account_id))

    return await db.run(work, what="a lessee's usage", write=False)


EARNINGS_BY = ("node", "day")


async def earnings(
    db: Database, user_id: int, *, since: float = 0.0, by: str = "node"
) -> tuple[UsageLine, ...]:
    """What the nodes bound to user `user_id` were paid (node price, without the anchor's fee) for
    settlements since `since`, per node or per UTC day; channel rests on their own line. A payment
    moved to the node that ran a call (`supersede`) counts for the node its settlement names."""
    if by not in EARNINGS_BY:
        raise LocalError(f"earnings are by {' or '.join(EARNINGS_BY)}, not {by[:32]!r}")

    async def work(connection: AsyncConnection) -> tuple[UsageLine, ...]:
        nodes = sa.select(key_owners.c.key_id).where(
            key_owners.c.user_id == user_id, key_owners.c.kind == "node"
        )
        key = _utc_day(db.dialect, settlements.c.settled_at) if by == "day" else settlements.c.node_id
        rows = await _grouped(
            connection, settlements.c.node_id.in_(nodes), key, settlements.c.price_micro, since=since
        )
        return _lines(rows, lambda row: _line_key(bool(row.rest), row.key, by, {}))

    return await db.run(work, what="a volunteer's earnings", write=False)


async def _grouped(
    connection: AsyncConnection,
    which: sa.ColumnElement[bool],
    key: sa.ColumnElement[Any],
    charged: sa.ColumnElement[Any],
    *,
    since: float,
) -> Sequence[Any]:
    """The settlements `which` since `since`, summed per `key` (every rest on its one line)."""
    is_rest = settlements.c.invocation_id.startswith(REST_PREFIX)
    rest = sa.case((is_rest, 1), else_=0)
    group_key = sa.case((is_rest, sa.null()), else_=key)
    query = (
        sa.select(
            rest.label("rest"),
            group_key.label("key"),
            sa.func.sum(1 - rest).label("calls"),
            sa.func.sum(settlements.c.cpu_ms).label("cpu_ms"),
            sa.func.sum(settlements.c.mb_ms).label("mb_ms"),
            sa.func.sum(charged).label("charged"),
        )
        .where(which, settlements.c.settled_at >= since)
        .group_by(rest, group_key)
        .order_by(rest.desc(), group_key)  # past the cap, the rests' line and the first keys stay
        .limit(MAX_LINES)
    )
    return (await connection.execute(query)).all()


def _lines(rows: Sequence[Any], key_of: Callable[[Any], str]) -> tuple[UsageLine, ...]:
    lines = [
        UsageLine(
            key_of(row), int(row.calls or 0), int(row.cpu_ms or 0), int(row.mb_ms or 0), int(row.charged or 0)
        )
        for row in rows
    ]
    return tuple(sorted(lines, key=lambda line: line.key))


def _utc_day(dialect: str, column: sa.ColumnElement[float]) -> sa.ColumnElement[int]:
    """The UTC day number (days since the epoch) of a timestamp column, in the database's own SQL:
    MariaDB's CAST to an integer rounds, SQLite's truncates (a floor for times after 1970)."""
    if dialect == "mysql":
        return sa.func.floor(column / 86400)
    return sa.cast(column / 86400, sa.Integer)


async def _names(connection: AsyncConnection, digests: list[str]) -> dict[str, str]:
    """`name@version` of each digest this registry holds."""
    if not digests:
        return {}
    rows = await connection.execute(
        sa.select(bundles.c.digest, bundles.c.name, bundles.c.version).where(bundles.c.digest.in_(digests))
    )
    return {str(row.digest): f"{row.name}@{row.version}" for row in rows}


def _line_key(rest: bool, key: object, by: str, names: dict[str, str]) -> str:
    if rest:
        return REST_LINE
    if by == "day":
        return time.strftime("%Y-%m-%d", time.gmtime(int(key) * 86400))  # type: ignore[call-overload]
    if by == "node":
        return str(key)
    if key is None:
        return "(function unknown)"  # settled before revision 0008 recorded the function
    return names.get(str(key), f"(function {str(key)[:12]})")  # its bundle is not in this registry


async def _movements(connection: AsyncConnection, account_id: int) -> tuple[int, int, int, int]:
    """(bought, spent, returned, held) of the account's vouchers, all time."""
    bought = await connection.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(vouchers.c.budget_micro), 0)).where(
            vouchers.c.lessee_account_id == account_id
        )
    )
    spent = await connection.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(settlements.c.price_micro + settlements.c.fee_micro), 0))
        .select_from(settlements.join(vouchers, vouchers.c.voucher_id == settlements.c.voucher_id))
        .where(vouchers.c.lessee_account_id == account_id)
    )
    holds = sa.select(vouchers.c.hold_account_id).where(vouchers.c.lessee_account_id == account_id)
    returned = await connection.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(entries.c.amount_micro), 0))
        .select_from(entries.join(transfers, transfers.c.transfer_id == entries.c.transfer_id))
        .where(transfers.c.kind == "release", entries.c.account_id == account_id, entries.c.amount_micro > 0)
    )
    held = await connection.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(accounts.c.balance_micro), 0)).where(
            accounts.c.account_id.in_(holds)
        )
    )
    return int(bought or 0), int(spent or 0), int(returned or 0), int(held or 0)
