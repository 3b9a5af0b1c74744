"""`Settler` on SQLite and MariaDB: each invocation paid at most once, never beyond its hold."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

from p2pfaas import signing
from p2pfaas.db import Database
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind, FeePolicy, Refusal
from p2pfaas.ledger.postings import FEES_ACCOUNT
from p2pfaas.ledger.settlement import Settler, claim_of, node_account_name
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.messages import Receipt
from p2pfaas.tickets import sign_ticket
from tests.ledger.conftest import T0, funded_voucher, keys, receipt, signed_for

NODE, OTHER_NODE, LESSEE, ANCHOR = keys("node"), keys("node-2"), keys("lessee"), keys("anchor")


async def balance_of(store: LedgerStore, name: str, kind: AccountKind) -> int:
    return (await store.account(await store.open_account(name, kind, now=T0))).balance_micro


async def test_batch_pays_node_and_fee_from_the_hold(store: LedgerStore, db: Database) -> None:
    await funded_voucher(store, "v1", 1000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=100_000))
    claims = [
        claim_of(receipt(f"inv-{n}", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100))
        for n in range(3)
    ]
    done = await settler.settle(NODE.key_id, claims, now=T0 + 1)
    assert sorted(done.paid) == ["inv-0", "inv-1", "inv-2"] and done.refused == {}
    assert (done.paid_micro, done.fee_micro) == (300, 30)
    assert await balance_of(store, node_account_name(NODE.key_id), AccountKind.NODE) == 300
    assert await balance_of(store, FEES_ACCOUNT, AccountKind.ANCHOR) == 30
    assert await store.voucher_remaining("v1") == (670, "open")
    assert await audit(db) == []


async def test_replays_reorders_and_second_nodes_are_never_paid_twice(
    store: LedgerStore, db: Database
) -> None:
    await funded_voucher(store, "v1", 1000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=0))
    batch = [
        claim_of(receipt(f"inv-{n}", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=10))
        for n in range(5)
    ]
    assert len((await settler.settle(NODE.key_id, batch, now=T0)).paid) == 5
    replay = await settler.settle(NODE.key_id, list(reversed(batch)), now=T0)
    assert replay.paid == () and set(replay.refused.values()) == {Refusal.DUPLICATE}
    stolen = [claim_of(receipt("inv-0", node=OTHER_NODE, lessee=LESSEE, voucher_id="v1", price_micro=10))]
    assert (await settler.settle(OTHER_NODE.key_id, stolen, now=T0)).refused == {"inv-0": Refusal.DUPLICATE}
    assert await balance_of(store, node_account_name(OTHER_NODE.key_id), AccountKind.NODE) == 0
    assert await store.voucher_remaining("v1") == (950, "open")
    assert await audit(db) == []


async def test_over_budget_and_foreign_receipts_are_refused(store: LedgerStore, db: Database) -> None:
    await funded_voucher(store, "v1", 250)
    settler = Settler(db, fees=FeePolicy(fee_ppm=0))
    claims = [
        claim_of(receipt("a", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100)),
        claim_of(receipt("b", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100)),
        claim_of(receipt("c", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100)),
        claim_of(receipt("d", node=NODE, lessee=keys("mallory"), voucher_id="v1", price_micro=10)),
        claim_of(receipt("e", node=NODE, lessee=LESSEE, voucher_id="nope", price_micro=10)),
        claim_of(receipt("f", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=50)),
    ]
    done = await settler.settle(NODE.key_id, claims, now=T0)
    assert sorted(done.paid) == ["a", "b", "f"]
    assert done.refused == {"c": Refusal.OVER_BUDGET, "d": Refusal.WRONG_LESSEE, "e": Refusal.UNKNOWN_VOUCHER}
    assert await store.voucher_remaining("v1") == (0, "open")
    # Once released, a late receipt finds the voucher closed: nothing is paid from nothing.
    await store.release_expired(now=T0 + 7200, grace_s=60)
    late = [claim_of(receipt("g", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=1))]
    assert (await settler.settle(NODE.key_id, late, now=T0 + 7200)).refused == {"g": Refusal.VOUCHER_CLOSED}
    assert await audit(db) == []


async def test_concurrent_batches_from_two_nodes_settle_each_invocation_once(
    store: LedgerStore, db: Database
) -> None:
    await funded_voucher(store, "v1", 5000)
    await funded_voucher(store, "v2", 5000)
    rng = random.Random(5)
    ids = [f"inv-{n}" for n in range(60)]

    async def node_sends(node_seed: str) -> None:
        node = keys(node_seed)
        settler = Settler(db, fees=FeePolicy(fee_ppm=20_000))
        order = ids[:]
        rng.shuffle(order)
        for start in range(0, len(order), 7):
            chunk = order[start : start + 7]
            claims = [
                claim_of(
                    receipt(
                        i,
                        node=node,
                        lessee=LESSEE,
                        voucher_id="v1" if int(i[4:]) % 2 else "v2",
                        price_micro=50,
                    )
                )
                for i in chunk
            ]
            await settler.settle(node.key_id, claims, now=T0)

    await asyncio.gather(*(node_sends(f"n{k}") for k in range(4)))
    total = sum(
        [await balance_of(store, node_account_name(keys(f"n{k}").key_id), AccountKind.NODE) for k in range(4)]
    )
    assert total == 60 * 50
    assert await balance_of(store, FEES_ACCOUNT, AccountKind.ANCHOR) == 60 * 1
    assert await audit(db) == []


async def test_receipts_without_their_lessees_valid_ticket_pay_nothing(
    store: LedgerStore, db: Database
) -> None:
    """A node that has seen a voucher cannot bill it for work the lessee never asked for."""
    await funded_voucher(store, "v1", 1000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=100_000))
    mallory = keys("mallory")

    def node_signed(r: Receipt) -> Receipt:
        return signing.sign(r, NODE)

    genuine = receipt("genuine", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100)
    assert genuine.ticket is not None
    other = receipt("other", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100)
    assert other.ticket is not None
    invented = [
        node_signed(replace(other, invocation_id="missing", ticket=None)),
        receipt("by-mallory", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100, ticket_by=mallory),
        # the lessee's key on a ticket the node signed itself: its signature fails
        node_signed(
            replace(
                other,
                invocation_id="forged",
                ticket=replace(
                    sign_ticket(
                        "forged", "v1", other.request_sha256, NODE, payee=NODE.key_id, max_price_micro=10**9
                    ),
                    signer=LESSEE.public.raw,
                ),
            )
        ),
        node_signed(replace(other, invocation_id="copied")),  # another invocation's genuine ticket
        node_signed(replace(other, request_sha256=bytes(32))),  # ran (it says) another request
        node_signed(replace(other, voucher_id="v2")),  # the ticket names v1
        node_signed(replace(genuine, ticket=other.ticket)),  # a replay of a paid id, another ticket
    ]
    signed = signed_for([genuine, other], LESSEE)  # the lessee received these two results
    done = await settler.settle_receipts(
        NODE.key_id, [genuine, *invented], now=T0 + 1, channel_tickets=signed
    )
    assert done.paid == ("genuine",) and (done.paid_micro, done.fee_micro) == (100, 10)
    assert done.refused == {
        r.invocation_id: Refusal.BAD_TICKET
        for r in invented
        if r.invocation_id != "genuine"  # the same id with a good ticket was paid: not refused
    }
    # A ticket of its own, from a key that is not the voucher's lessee: the wrong lessee.
    selfmade = receipt("selfmade", node=NODE, lessee=mallory, voucher_id="v1", price_micro=100)
    again = await settler.settle_receipts(
        NODE.key_id, [selfmade, *invented], now=T0 + 2, channel_tickets=signed
    )
    assert again.paid == () and again.refused["selfmade"] is Refusal.WRONG_LESSEE
    assert again.refused["genuine"] is Refusal.BAD_TICKET  # a resend with a bad ticket: still nothing
    assert await balance_of(store, node_account_name(NODE.key_id), AccountKind.NODE) == 100
    assert await store.voucher_remaining("v1") == (890, "open")
    # The genuine receipt resent is a duplicate, paid once.
    resent = await settler.settle_receipts(NODE.key_id, [genuine, other], now=T0 + 3, channel_tickets=signed)
    assert resent.paid == ("other",) and resent.refused == {"genuine": Refusal.DUPLICATE}
    assert await store.voucher_remaining("v1") == (780, "open")
    assert await audit(db) == []
