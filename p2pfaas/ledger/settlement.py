"""Settling receipt batches: each invocation paid at most once, never beyond its voucher's hold.

`Settler.settle(node_id, claims, now)` runs one transaction for a whole batch, set-based so its
cost hardly grows with the batch (a handful of statements, whatever the number of receipts):

1. lock the vouchers the batch draws on, then their hold accounts (`SELECT ... FOR UPDATE` by
   primary key, in id order) and read what each hold has left;
2. `policy.admit_batch` decides, first come first paid, assuming no id was settled before; if
   that assumption could change a verdict (anything was refused), read the settled ids first;
3. insert the admitted settlements, tagged with this attempt's random token: for fresh receipts
   one multi-row INSERT under a savepoint, undone whole on an id settled before (a replay); then
   (or when step 2 read the settled ids) an insert that skips existing ids, reading back the rows
   this attempt owns. The primary key is the last word: a concurrent settlement of the same id
   under another voucher blocks on it, then loses;
4. one transfer for the batch: each hold pays its charges, the node's earning account gets the
   prices, the anchor's fee account the fees, by one conditional UPDATE (rows in id order).

`settle_receipts` checks every receipt on its own before anything is locked (`p2pfaas.tickets`):
its own signature by the batch's node (BAD_SIGNATURE: a receipt altered after signing is never
paid, whatever signs the batch), its lessee's valid spend ticket (BAD_TICKET: a node cannot bill
work its lessee never asked for), a chain of delegations from the ticket's payee to the signer
(WRONG_NODE: a node cannot bill a call that was not sent or forwarded to it) and a price within
the ticket's cap (OVER_TICKET). Step 2 then checks that the ticket's signer, the receipt's lessee
key, is the voucher's. `settle` itself trusts its claims.

Payment channels (`p2pfaas.channels`): the batch carries the node's latest `ChannelTicket` per
voucher. Under the voucher's lock, `_settle_once` raises the channel's row (`channels`) to the
highest total the voucher's lessee signed for this node, and admits receipts only while their
prices fit what is signed and not yet paid (UNSIGNED otherwise, resent by the node later); what it
pays is added to the row's `paid_micro`, which a CHECK keeps within `signed_micro`. So a node is
never paid more on a voucher than the lessee signed for that node's results.

A payee that forwarded an invocation and also billed it, and was paid first, gives that payment to
the executor whose receipt carries the payee's delegation (`p2pfaas.ledger.supersede`).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.channels import channel_problem
from p2pfaas.db import Database
from p2pfaas.db.schema import settlements, transfers
from p2pfaas.db.upsert import insert_ignore_many
from p2pfaas.ledger.channels import add_paid, lock_vouchers, raise_channels
from p2pfaas.ledger.earners import AccountIds, node_account_name
from p2pfaas.ledger.policy import (
    REST_PREFIX,
    AccountKind,
    Admission,
    FeePolicy,
    ReceiptClaim,
    Refusal,
    VoucherView,
    admit_batch,
)
from p2pfaas.ledger.postings import (
    FEES_ACCOUNT,
    is_duplicate_key,
    move,
)
from p2pfaas.ledger.supersede import UNSIGNED_MOVE, supersede
from p2pfaas.messages import ChannelTicket, Receipt
from p2pfaas.money import MAX_AMOUNT_MICRO
from p2pfaas.tickets import (
    chain_problem,
    price_problem,
    receipt_signature_problem,
    receipt_ticket_problem,
)

__all__ = ["SettledBatch", "Settler", "claim_of", "node_account_name"]

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")

DEFAULT_EXPIRY_SKEW_S = 60.0


def _refusal(receipt: Receipt, node_id: str) -> Refusal | None:
    """Why the anchor must not pay `receipt` from node `node_id`, judged from the receipt alone."""
    if receipt.invocation_id.startswith(REST_PREFIX):  # the channel rounds' own ids
        return Refusal.BAD_TICKET
    if receipt_signature_problem(receipt, node_id) is not None:
        return Refusal.BAD_SIGNATURE
    if receipt_ticket_problem(receipt) is not None:
        return Refusal.BAD_TICKET
    assert receipt.ticket is not None
    if chain_problem(receipt.ticket, receipt.delegations, node_id) is not None:
        return Refusal.WRONG_NODE
    if price_problem(receipt) is not None:
        return Refusal.OVER_TICKET
    return None


def claim_of(receipt: Receipt) -> ReceiptClaim:
    return ReceiptClaim(
        invocation_id=receipt.invocation_id,
        voucher_id=receipt.voucher_id,
        lessee_key=receipt.lessee_key,
        price_micro=receipt.price_micro,
        issued_at=receipt.issued_at,
        result_sha256=receipt.result_sha256,
        # What it ran and used, for the lessee's bill (`usage`), as the node signed it; bounded, so
        # a hostile node's numbers cannot break the row (a digest is 64 hex digits or nothing).
        digest=receipt.digest if _HEX64.fullmatch(receipt.digest) else None,
        cpu_ms=min(max(receipt.cpu_ms, 0), MAX_AMOUNT_MICRO),
        mb_ms=min(max(receipt.peak_memory_mb, 0) * max(receipt.wall_ms, 0), MAX_AMOUNT_MICRO),
    )


@dataclass(frozen=True)
class SettledBatch:
    """What became of a batch: ids paid now, and refusals (DUPLICATE: paid before; not an error)."""

    paid: tuple[str, ...]
    refused: dict[str, Refusal]
    paid_micro: int  # to the node, in total
    fee_micro: int


class ClaimGate(Protocol):
    """Splits a node's claims into (payable now, outvoted); the ones in neither wait (a vote pending).

    The anchor wires its replication vote here (`p2pfaas.anchor.trust_store.replica_gate`); the
    ledger knows nothing of votes.
    """

    async def __call__(
        self, db: Database, node_id: str, claims: Sequence[ReceiptClaim], *, now: float
    ) -> tuple[list[ReceiptClaim], list[str]]: ...


async def pay_every_claim(
    db: Database, node_id: str, claims: Sequence[ReceiptClaim], *, now: float
) -> tuple[list[ReceiptClaim], list[str]]:
    """The gate of a ledger with no replication vote: every claim is payable now."""
    return list(claims), []


class Settler:
    """Settles batches for one anchor; stateless apart from its cache of account ids (`accounts`)."""

    def __init__(
        self,
        db: Database,
        *,
        fees: FeePolicy | None = None,
        expiry_skew_s: float = DEFAULT_EXPIRY_SKEW_S,
        gate: ClaimGate = pay_every_claim,
    ) -> None:
        self.db = db
        self.gate = gate
        self.fees = fees or FeePolicy()
        self.expiry_skew_s = expiry_skew_s
        self.accounts = AccountIds(db)

    async def earning_account(self, node_id: str, *, now: float) -> int:
        """Where node `node_id` earns (`AccountIds.earning_account`)."""
        return await self.accounts.earning_account(node_id, now=now)

    async def settle_receipts(
        self,
        node_id: str,
        receipts: Sequence[Receipt],
        *,
        now: float,
        channel_tickets: Sequence[ChannelTicket] = (),
    ) -> SettledBatch:
        """Pay the node `node_id` (whose batch signature is checked) for `receipts` that each verify
        on their own, carry their lessee's valid spend ticket for this node and price, and fit what
        the lessee signed on the node's channels (`channel_tickets`, each verified here); refuse the
        others (one or two Ed25519 checks each, plus one per delegation and channel ticket)."""
        offered: dict[str, ChannelTicket] = {}
        for ticket in channel_tickets:
            best = offered.get(ticket.voucher_id)
            if (best is None or ticket.total_micro > best.total_micro) and channel_problem(
                ticket, node_id=node_id
            ) is None:
                offered[ticket.voucher_id] = ticket
        claims: list[ReceiptClaim] = []
        bad: dict[str, Refusal] = {}
        delegated: dict[str, Receipt] = {}
        for receipt in receipts:
            refusal = _refusal(receipt, node_id)
            if refusal is None:
                claims.append(claim_of(receipt))
                if receipt.delegations:
                    delegated[receipt.invocation_id] = receipt
            else:
                bad.setdefault(receipt.invocation_id, refusal)
        done = (
            await self.settle(node_id, claims, now=now, channel_tickets=offered)
            if claims
            else SettledBatch((), {}, 0, 0)
        )
        for invocation_id, refusal in bad.items():
            if invocation_id not in done.paid:  # the same id with a good receipt may have been paid
                done.refused.setdefault(invocation_id, refusal)
        superseded = [
            receipt
            for invocation_id, receipt in delegated.items()
            if done.refused.get(invocation_id) is Refusal.DUPLICATE
        ]
        if not superseded:
            return done
        paid = list(done.paid)
        paid_micro = done.paid_micro
        for receipt in superseded:
            executor_account = await self.earning_account(node_id, now=now)  # before the transaction
            moved = await supersede(self.db, node_id, executor_account, receipt, now=now)
            if moved is UNSIGNED_MOVE:
                done.refused[receipt.invocation_id] = Refusal.UNSIGNED
            elif moved is not None:
                paid.append(receipt.invocation_id)
                paid_micro += moved
                del done.refused[receipt.invocation_id]
        return SettledBatch(tuple(paid), done.refused, paid_micro, done.fee_micro)

    async def settle(
        self,
        node_id: str,
        claims: Sequence[ReceiptClaim],
        *,
        now: float,
        channel_tickets: Mapping[str, ChannelTicket] | None = None,
    ) -> SettledBatch:
        """Pay the node `node_id` for `claims` (already verified as its signed receipts) within its
        channels, given the latest verified `channel_tickets` by voucher id (`settle_receipts` always
        gives them; None, for the ledger's own tests and benchmarks of batch cost: not gated)."""
        # Trust: a replica is paid only once its vote says so; outvoted ones never (the gate).
        claims, outvoted = await self.gate(self.db, node_id, claims, now=now)
        done = await self._settle_ungated(node_id, claims, now=now, channel_tickets=channel_tickets)
        done.refused.update(dict.fromkeys(outvoted, Refusal.OUTVOTED))
        return done

    async def settle_rests(self, node_id: str, claims: Sequence[ReceiptClaim], *, now: float) -> SettledBatch:
        """Pay node `node_id` the rests of its channels (`claims` from `p2pfaas.ledger.rounds`, one
        per voucher), each within what the channel has signed and unpaid under the voucher's lock
        (UNSIGNED when a receipt took that room first). No vote gates them: they are no replicas."""
        return await self._settle_ungated(node_id, claims, now=now, channel_tickets={})

    async def _settle_ungated(
        self,
        node_id: str,
        claims: Sequence[ReceiptClaim],
        *,
        now: float,
        channel_tickets: Mapping[str, ChannelTicket] | None,
    ) -> SettledBatch:
        node_account = await self.earning_account(node_id, now=now)
        fees_account = await self.accounts.account_id(FEES_ACCOUNT, AccountKind.ANCHOR, now=now)

        async def work(connection: AsyncConnection) -> SettledBatch:
            return await self._settle_once(
                connection, node_id, node_account, fees_account, claims, now, channel_tickets
            )

        return await self.db.run(work, what=f"settle {len(claims)} receipts")

    async def _settle_once(
        self,
        connection: AsyncConnection,
        node_id: str,
        node_account: int,
        fees_account: int,
        claims: Sequence[ReceiptClaim],
        now: float,
        channel_tickets: Mapping[str, ChannelTicket] | None,
    ) -> SettledBatch:
        attempt = secrets.token_hex(16)  # new per attempt: a retried transaction gets its own
        views, holds = await lock_vouchers(connection, {claim.voucher_id for claim in claims})
        room: dict[str, int] | None = None
        if channel_tickets is not None:  # under the voucher locks: no other batch moves these rows
            room, _ = await raise_channels(connection, node_id, views, channel_tickets, now)
        admission = admit_batch(
            claims,
            vouchers=views,
            settled=frozenset(),
            fees=self.fees,
            expiry_skew_s=self.expiry_skew_s,
            channel_room=room,
        )
        careful = bool(admission.refused)  # a refusal may hide a replay: tell DUPLICATE apart
        if careful:
            admission = await self._admit_knowing_settled(connection, claims, views, room)
        if not admission.paid:
            return SettledBatch((), admission.refused, 0, 0)
        result = await connection.execute(
            transfers.insert().values(
                kind="settle", ref=f"settle:{attempt}", memo=f"node {node_id}", created_at=now
            )
        )
        transfer_id = int(result.inserted_primary_key[0])  # type: ignore[index]

        def rows() -> list[dict[str, object]]:
            return [
                {
                    "invocation_id": claim.invocation_id,
                    "voucher_id": claim.voucher_id,
                    "node_id": node_id,
                    "price_micro": claim.price_micro,
                    "fee_micro": fee,
                    "result_sha256": claim.result_sha256,
                    "digest": claim.digest,
                    "cpu_ms": claim.cpu_ms,
                    "mb_ms": claim.mb_ms,
                    "attempt": attempt,
                    "transfer_id": transfer_id,
                    "settled_at": now,
                }
                for claim, fee in admission.paid
            ]

        mine: set[str] | None = None
        if not careful:
            # The common case, a batch of fresh receipts: a plain INSERT, undone whole if any id
            # was settled before. Under a savepoint, because an executemany may be several
            # statements (SQLite runs one per row; PyMySQL splits very long ones).
            try:
                async with connection.begin_nested():
                    await connection.execute(settlements.insert(), rows())
                mine = {claim.invocation_id for claim, _ in admission.paid}
            except sa_exc.IntegrityError as error:
                if not is_duplicate_key(error):
                    raise
                admission = await self._admit_knowing_settled(connection, claims, views, room)
        if mine is None:
            # Skip ids that exist; an id settled concurrently under another voucher (it waited
            # for that transaction, then lost) is not this attempt's, and is not paid here.
            if admission.paid:
                insert = insert_ignore_many(connection.dialect.name, settlements, key=["invocation_id"])
                await connection.execute(insert, rows())
            ids = [claim.invocation_id for claim, _ in admission.paid]
            query = sa.select(settlements.c.invocation_id).where(
                settlements.c.invocation_id.in_(ids), settlements.c.attempt == attempt
            )
            mine = set(await connection.scalars(query)) if ids else set()
        legs: dict[int, int] = {}
        paid: list[str] = []
        paid_micro = fee_micro = 0
        refused = dict(admission.refused)
        by_channel: dict[str, int] = {}
        for claim, fee in admission.paid:
            if claim.invocation_id not in mine:
                refused[claim.invocation_id] = Refusal.DUPLICATE  # settled concurrently under another voucher
                continue
            hold = holds[claim.voucher_id]
            legs[hold] = legs.get(hold, 0) - claim.price_micro - fee
            paid.append(claim.invocation_id)
            paid_micro += claim.price_micro
            fee_micro += fee
            by_channel[claim.voucher_id] = by_channel.get(claim.voucher_id, 0) + claim.price_micro
        if room is not None:
            for voucher_id, amount in sorted(by_channel.items()):
                await add_paid(connection, voucher_id, node_id, amount, now)
        legs[node_account] = legs.get(node_account, 0) + paid_micro
        legs[fees_account] = legs.get(fees_account, 0) + fee_micro
        if not paid:
            await connection.execute(transfers.delete().where(transfers.c.transfer_id == transfer_id))
        await move(connection, transfer_id, legs, what="settle")
        return SettledBatch(tuple(paid), refused, paid_micro, fee_micro)

    async def _admit_knowing_settled(
        self,
        connection: AsyncConnection,
        claims: Sequence[ReceiptClaim],
        views: dict[str, VoucherView],
        room: Mapping[str, int] | None,
    ) -> Admission:
        ids = sorted({claim.invocation_id for claim in claims})
        query = sa.select(settlements.c.invocation_id).where(settlements.c.invocation_id.in_(ids))
        settled = frozenset(await connection.scalars(query))
        return admit_batch(
            claims,
            vouchers=views,
            settled=settled,
            fees=self.fees,
            expiry_skew_s=self.expiry_skew_s,
            channel_room=room,
        )
