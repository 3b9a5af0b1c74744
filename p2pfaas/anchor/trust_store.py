"""The anchor's trust records: replication votes, per-replica verdicts, held replicas, reputations, lies.

`TrustStore` is the only code that queries `replication_groups`, `replica_verdicts`,
`held_receipts`, `advert_lies` and `reputation`. The rules come from `p2pfaas.trust` (votes,
BOINC's adaptive replication, the settlement gate); this module reads rows, asks the rules, and
writes the answers, one transaction per call through `Database.run`.

Idempotence: a group is counted once (its primary key; the first report stands), a lie once per
receipt, so a retried or replayed report never moves a reputation twice. Reputation rows are locked
in ascending node id order, after they are made to exist, so concurrent reports do not deadlock
on each other (and if the database says they did, `Database.run` retries).

`replica_gate` is the settlement hook: `p2pfaas.ledger.settlement.Settler.settle` passes each
batch through it, and it takes out the replicas that must wait for their vote or lost it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import advert_lies, held_receipts, replica_verdicts, replication_groups, reputation
from p2pfaas.db.upsert import insert_ignore
from p2pfaas.ledger.postings import is_duplicate_key
from p2pfaas.trust.adaptive import AdaptivePolicy, Record
from p2pfaas.trust.gate import DEFAULT_HOLD_S, Gate, Verdict, VerdictRow, gate_replica
from p2pfaas.trust.replica_ids import is_replica
from p2pfaas.trust.vote import Agreed, Inconclusive

__all__ = ["Replica", "TrustStore", "replica_gate"]


class _Claim(Protocol):
    @property
    def invocation_id(self) -> str: ...


C = TypeVar("C", bound=_Claim)


@dataclass(frozen=True)
class Replica:
    """One reported replica: whose receipt, for which invocation id."""

    invocation_id: str
    node_id: str


class TrustStore:
    def __init__(self, db: Database, *, policy: AdaptivePolicy | None = None) -> None:
        self.db = db
        self.policy = policy or AdaptivePolicy()

    async def record_vote(
        self,
        *,
        group: str,
        lessee_key_id: str,
        digest: str,
        decision: Agreed | Inconclusive,
        replicas: Sequence[Replica],
        now: float,
    ) -> bool:
        """Store a decided vote and apply it to the nodes' records. False if the group was reported before."""
        agreed = decision if isinstance(decision, Agreed) else None
        group_row = {
            "group_id": group,
            "lessee_key_id": lessee_key_id,
            "digest": digest,
            "outcome": "agreed" if agreed else "inconclusive",
            "result_sha256": agreed.result_sha256 if agreed else None,
            "ballots": len(replicas),
            "reported_at": now,
        }
        verdict_rows = [
            {
                "invocation_id": replica.invocation_id,
                "group_id": group,
                "node_id": replica.node_id,
                "verdict": str(_verdict(agreed, replica.node_id)),
                "decided_at": now,
            }
            for replica in sorted(replicas, key=lambda r: r.invocation_id)
        ]

        async def work(connection: AsyncConnection) -> bool:
            try:
                await connection.execute(replication_groups.insert().values(group_row))
            except sa_exc.IntegrityError as error:
                if is_duplicate_key(error):
                    return False  # reported before (or right now, by a concurrent report that won)
                raise
            await connection.execute(
                insert_ignore(self.db.dialect, replica_verdicts, verdict_rows, key=["invocation_id"])
            )
            if agreed is not None:
                outcomes = {node: node in agreed.agreeing for node in agreed.agreeing | agreed.dissenting}
                await self._apply(connection, outcomes, now)
            return True

        return await self.db.run(work, what=f"record the vote of group {group[:12]}")

    async def record_lie(
        self, *, node_id: str, invocation_id: str, price_micro: int, max_price_micro: int, now: float
    ) -> bool:
        """Count a proven overcharge against the node, once per receipt. False if counted before."""
        row = {
            "node_id": node_id,
            "invocation_id": invocation_id,
            "price_micro": price_micro,
            "max_price_micro": max_price_micro,
            "reported_at": now,
        }

        async def work(connection: AsyncConnection) -> bool:
            try:
                await connection.execute(advert_lies.insert().values(row))
            except sa_exc.IntegrityError as error:
                if is_duplicate_key(error):
                    return False
                raise
            await self._apply(connection, {node_id: None}, now)
            return True

        return await self.db.run(work, what=f"record a lie by node {node_id[:12]}")

    async def _apply(
        self, connection: AsyncConnection, outcomes: Mapping[str, bool | None], now: float
    ) -> None:
        """Apply each node's outcome (True agreed, False dissented, None lied) to its record."""
        nodes = sorted(outcomes)
        fresh = [
            {
                "node_id": n,
                "agreements": 0,
                "disagreements": 0,
                "consecutive_valid": 0,
                "lies": 0,
                "updated_at": now,
            }
            for n in nodes
        ]
        await connection.execute(insert_ignore(self.db.dialect, reputation, fresh, key=["node_id"]))
        rows = (
            await connection.execute(
                sa.select(reputation)
                .where(reputation.c.node_id.in_(nodes))
                .order_by(reputation.c.node_id)
                .with_for_update()
            )
        ).all()
        for row in rows:
            before = _record(row._mapping)
            outcome = outcomes[row.node_id]
            after = (
                self.policy.after_lie(before)
                if outcome is None
                else self.policy.after_vote(before, agreed=outcome)
            )
            await connection.execute(
                reputation.update()
                .where(reputation.c.node_id == row.node_id)
                .values(
                    agreements=after.agreements,
                    disagreements=after.disagreements,
                    consecutive_valid=after.consecutive_valid,
                    lies=after.lies,
                    updated_at=now,
                )
            )

    async def records(self, node_ids: Sequence[str]) -> dict[str, Record]:
        """Each node's record; a node never voted on has an empty one."""
        wanted = sorted(set(node_ids))

        async def work(connection: AsyncConnection) -> dict[str, Record]:
            rows = (
                await connection.execute(sa.select(reputation).where(reputation.c.node_id.in_(wanted)))
            ).all()
            return {row.node_id: _record(row._mapping) for row in rows}

        found = await self.db.run(work, what="read reputations", write=False) if wanted else {}
        return {node: found.get(node, Record()) for node in wanted}

    async def verdicts(self, group: str) -> dict[str, VerdictRow]:
        query = sa.select(replica_verdicts).where(replica_verdicts.c.group_id == group)

        async def work(connection: AsyncConnection) -> dict[str, VerdictRow]:
            rows = (await connection.execute(query)).all()
            return {row.invocation_id: VerdictRow(row.node_id, row.verdict) for row in rows}

        return await self.db.run(work, what="read verdicts", write=False)


async def replica_gate(
    db: Database, node_id: str, claims: Sequence[C], *, now: float, hold_s: float = DEFAULT_HOLD_S
) -> tuple[list[C], list[str]]:
    """Split a node's receipt claims: (payable now, outvoted). Replicas waiting for a vote are in neither.

    Ordinary invocations pass untouched, without a query. For replicas: see `p2pfaas.trust.gate`.
    """
    replica_ids = sorted({c.invocation_id for c in claims if is_replica(c.invocation_id)})
    if not replica_ids:
        return list(claims), []

    async def work(connection: AsyncConnection) -> dict[str, Gate]:
        voted = {
            row.invocation_id: VerdictRow(row.node_id, row.verdict)
            for row in await connection.execute(
                sa.select(replica_verdicts).where(replica_verdicts.c.invocation_id.in_(replica_ids))
            )
        }
        seen = {
            row.invocation_id: float(row.first_seen_at)
            for row in await connection.execute(
                sa.select(held_receipts).where(held_receipts.c.invocation_id.in_(replica_ids))
            )
        }
        gates = {
            i: gate_replica(node_id, voted.get(i), first_seen_at=seen.get(i, now), now=now, hold_s=hold_s)
            for i in replica_ids
        }
        newly_held = [
            {"invocation_id": i, "node_id": node_id, "first_seen_at": now}
            for i, g in gates.items()
            if g is Gate.HOLD and i not in seen
        ]
        if newly_held:
            await connection.execute(
                insert_ignore(db.dialect, held_receipts, newly_held, key=["invocation_id"])
            )
        done = [i for i, g in gates.items() if g is not Gate.HOLD and i in seen]
        if done:
            await connection.execute(held_receipts.delete().where(held_receipts.c.invocation_id.in_(done)))
        return gates

    gates = await db.run(work, what=f"gate {len(replica_ids)} replica receipts")
    payable = [c for c in claims if gates.get(c.invocation_id, Gate.PAY) is Gate.PAY]
    outvoted = [i for i, g in gates.items() if g is Gate.OUTVOTED]
    return payable, outvoted


def _verdict(agreed: Agreed | None, node_id: str) -> Verdict:
    if agreed is None:
        return Verdict.OPEN
    return Verdict.AGREED if node_id in agreed.agreeing else Verdict.DISSENT


def _record(m: sa.RowMapping) -> Record:
    return Record(
        agreements=int(m["agreements"]),
        disagreements=int(m["disagreements"]),
        consecutive_valid=int(m["consecutive_valid"]),
        lies=int(m["lies"]),
    )
