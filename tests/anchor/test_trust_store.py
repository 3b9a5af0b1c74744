"""The anchor's trust records (`p2pfaas.anchor.trust_store`) on SQLite and MariaDB: a group's vote counted
once, however many report it, and a lie counted once per receipt."""

from __future__ import annotations

from p2pfaas.anchor.trust_store import TrustStore
from p2pfaas.db import Database
from p2pfaas.identity import KeyPair
from p2pfaas.trust.adaptive import Record
from p2pfaas.trust.replica_ids import replica_id

DIGEST = "cd" * 32
GROUP = "0f" * 16
LESSEE, N1, N2, N3 = (KeyPair.from_seed(bytes([n]) * 32) for n in range(4))


async def test_trust_store_counts_a_group_once_under_concurrency(db: Database) -> None:
    import asyncio

    from p2pfaas.anchor.trust_store import Replica
    from p2pfaas.trust.vote import Agreed

    store = TrustStore(db)
    decision = Agreed(b"h" * 32, frozenset({N1.key_id, N2.key_id}), frozenset({N3.key_id}))
    replicas = [Replica(replica_id(GROUP, k + 1), n.key_id) for k, n in enumerate((N1, N2, N3))]
    firsts = await asyncio.gather(
        *(
            store.record_vote(
                group=GROUP,
                lessee_key_id=LESSEE.key_id,
                digest=DIGEST,
                decision=decision,
                replicas=replicas,
                now=1.0,
            )
            for _ in range(5)
        )
    )
    assert sorted(firsts) == [False] * 4 + [True]
    records = await store.records([N1.key_id, N2.key_id, N3.key_id])
    assert records[N1.key_id].agreements == 1 and records[N3.key_id].disagreements == 1


async def test_a_lie_is_counted_once_per_receipt_and_costs_the_node(db: Database) -> None:
    store = TrustStore(db)
    counted = [
        await store.record_lie(
            node_id=N1.key_id, invocation_id="i1", price_micro=500, max_price_micro=100, now=1.0
        )
        for _ in range(2)
    ]
    assert counted == [True, False]
    assert await store.record_lie(
        node_id=N1.key_id, invocation_id="i2", price_micro=9, max_price_micro=1, now=2.0
    )
    record = (await store.records([N1.key_id]))[N1.key_id]
    assert record.lies == 2 and record.consecutive_valid < 0  # trust to earn back
    assert await store.records(["ab" * 20]) == {"ab" * 20: Record()}  # never voted on: an empty record
