"""Channel rounds (`p2pfaas.ledger.rounds`) on SQLite and MariaDB: what a lessee signed and no receipt
claimed is paid to the node once, within the hold, and never beyond what was signed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.channels import sign_channel
from p2pfaas.db import Database
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.channels import record_tickets
from p2pfaas.ledger.policy import AccountKind, FeePolicy, Refusal
from p2pfaas.ledger.rounds import affordable_micro, rest_id, settle_rests
from p2pfaas.ledger.settlement import Settler, node_account_name
from p2pfaas.ledger.store import LedgerStore
from tests.ledger.conftest import T0, keys, receipt, signed_for, voucher

NODE, LESSEE, ANCHOR = keys("node"), keys("lessee"), keys("anchor")
QUIET_S = 60.0


async def funded(store: LedgerStore, budget: int, *, expires_at: float = T0 + 3600) -> None:
    account = await store.user_account(1, AccountKind.LESSEE, now=T0)
    await store.grant(ref="g-v1", account_id=account, amount_micro=10_000, now=T0)
    v = voucher("v1", LESSEE, budget, expires_at=expires_at, anchor=ANCHOR)
    await store.open_voucher(v, lessee_account_id=account, owner_user_id=1, now=T0)


async def earned(store: LedgerStore) -> int:
    name = node_account_name(NODE.key_id)
    return (await store.account(await store.open_account(name, AccountKind.NODE, now=T0))).balance_micro


async def test_a_signed_result_whose_receipt_never_came_is_paid_once_the_channel_is_quiet(
    store: LedgerStore, db: Database
) -> None:
    await funded(store, 1000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=100_000))
    results = [
        receipt(f"inv-{n}", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=100) for n in range(3)
    ]
    # The node sent two receipts, then stopped; the lessee handed the anchor its ticket for all three.
    (ticket,) = signed_for(results, LESSEE)
    await settler.settle_receipts(NODE.key_id, results[:2], now=T0 + 1, channel_tickets=[])
    assert await record_tickets(db, [ticket], now=T0 + 2) == 1
    first = await settler.settle_receipts(NODE.key_id, results[:2], now=T0 + 3, channel_tickets=[])
    assert sorted(first.paid) == ["inv-0", "inv-1"]
    # Not quiet yet: receipts on their way are paid as receipts first.
    assert await settle_rests(settler, now=T0 + 3 + QUIET_S / 2, quiet_s=QUIET_S) == 0
    assert await settle_rests(settler, now=T0 + 3 + QUIET_S, quiet_s=QUIET_S) == 100
    assert await earned(store) == 300
    assert await store.voucher_remaining("v1") == (1000 - 330, "open")
    # Nothing is paid twice: a second round pays nothing, the late receipt finds no room left.
    assert await settle_rests(settler, now=T0 + 10 * QUIET_S, quiet_s=QUIET_S) == 0
    late = await settler.settle_receipts(
        NODE.key_id, results[2:], now=T0 + 11 * QUIET_S, channel_tickets=[ticket]
    )
    assert late.paid == () and late.refused == {"inv-2": Refusal.UNSIGNED}
    assert await earned(store) == 300
    assert await audit(db) == []


async def test_an_unsigned_receipt_that_took_a_signed_ones_room_leaves_no_node_short(
    store: LedgerStore, db: Database
) -> None:
    """A hedged call ran on two nodes; the lessee used B's result. A's copy was paid first from room
    the lessee signed for A's other result, so A's own signed receipt waits, and B's is a duplicate:
    the channels still pay each node exactly what its lessee signed for it."""
    await funded(store, 1000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=0))
    other = keys("node-b")
    hedged_a = receipt("hedged", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=40)
    hedged_b = receipt("hedged", node=other, lessee=LESSEE, voucher_id="v1", price_micro=40)
    own_a = receipt("own", node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=40)
    (a_ticket,) = signed_for([own_a], LESSEE)
    (b_ticket,) = signed_for([hedged_b], LESSEE)
    a = await settler.settle_receipts(NODE.key_id, [hedged_a, own_a], now=T0 + 1, channel_tickets=[a_ticket])
    assert a.paid == ("hedged",) and a.refused == {"own": Refusal.UNSIGNED}
    b = await settler.settle_receipts(other.key_id, [hedged_b], now=T0 + 1, channel_tickets=[b_ticket])
    assert b.paid == () and b.refused == {"hedged": Refusal.DUPLICATE}
    assert await settle_rests(settler, now=T0 + 1 + QUIET_S, quiet_s=QUIET_S) == 40  # B's rest
    assert await earned(store) == 40
    assert await store.voucher_remaining("v1") == (1000 - 80, "open")  # what the lessee signed, in all
    assert await audit(db) == []


async def test_an_expired_voucher_pays_its_rests_at_once_and_never_beyond_its_hold(
    store: LedgerStore, db: Database
) -> None:
    await funded(store, 200, expires_at=T0 + 100)
    fees = FeePolicy(fee_ppm=50_000)
    settler = Settler(db, fees=fees)
    # A ticket over the budget (a lessee may sign more than its voucher holds): the hold is the cap.
    ticket = sign_channel("v1", NODE.key_id, seq=7, total_micro=500, keys=LESSEE)
    await record_tickets(db, [ticket], now=T0 + 99)
    paid = await settle_rests(settler, now=T0 + 101, quiet_s=QUIET_S)  # expired: due though not quiet
    assert paid == affordable_micro(500, 200, fees) == 190
    assert await store.voucher_remaining("v1") == (200 - fees.charge_micro(190), "open")
    assert await settle_rests(settler, now=T0 + 102, quiet_s=QUIET_S) == 0  # the hold cannot pay more
    assert await store.release_expired(now=T0 + 300, grace_s=120) == ["v1"]
    assert await audit(db) == []


def test_a_rest_id_fits_the_settlement_key_whatever_its_inputs() -> None:
    """Review: a rest id of a long voucher id and a huge seq overflowed the 64-character key on
    MariaDB and stopped every round; and a lower seq kept a higher total from a rest of its own."""
    ids = {rest_id("f" * 64, "a" * 40, total) for total in (1, 10**15)}
    assert len(ids) == 2 and all(len(i) == 64 and i.startswith("ch:") for i in ids)


async def test_no_receipt_can_squat_a_rests_id(store: LedgerStore, db: Database) -> None:
    """Review: the lessee could run a 1-micro call on its own node under the rest id it can
    predict, so the honest node's rest was a duplicate forever."""
    await funded(store, 1000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=0))
    squat = receipt(rest_id("v1", NODE.key_id, 100), node=NODE, lessee=LESSEE, voucher_id="v1", price_micro=1)
    done = await settler.settle_receipts(
        NODE.key_id, [squat], now=T0 + 1, channel_tickets=signed_for([squat], LESSEE)
    )
    assert done.paid == () and done.refused == {squat.invocation_id: Refusal.BAD_TICKET}


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 1_000_000))
def test_affordable_is_the_most_the_hold_can_pay(rest: int, hold: int, ppm: int) -> None:
    fees = FeePolicy(fee_ppm=ppm)
    amount = affordable_micro(rest, hold, fees)
    assert 0 <= amount <= rest and fees.charge_micro(amount) <= hold
    assert amount == rest or fees.charge_micro(amount + 1) > hold


async def test_a_hold_shared_by_several_channels_pays_each_rest_from_what_the_last_left(
    store: LedgerStore, db: Database
) -> None:
    """Review of #18: every channel of a voucher was sized from the hold read before the round,
    so when the hold could not pay all of them, the second rest asked for more than was left and
    was refused whole, leaving the rest of the hold unpaid to the node it was signed for."""
    await funded(store, 1000)
    settler = Settler(db, fees=FeePolicy(fee_ppm=0))
    nodes = [keys(f"node-{n}") for n in range(3)]
    tickets = [sign_channel("v1", n.key_id, seq=1, total_micro=400, keys=LESSEE) for n in nodes]
    await record_tickets(db, tickets, now=T0 + 1)
    assert await settle_rests(settler, now=T0 + 1 + QUIET_S, quiet_s=QUIET_S) == 1000  # 400 + 400 + 200
    assert await store.voucher_remaining("v1") == (0, "open")
    assert await settle_rests(settler, now=T0 + 2 + QUIET_S, quiet_s=QUIET_S) == 0
    assert await audit(db) == []


async def test_a_round_reads_each_due_channel_once(
    store: LedgerStore, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of #18: the round re-read its page from the start, plus every channel it skipped, so
    channels it could not pay made a round quadratic. It pages on (node, voucher) and skips dry holds."""
    from p2pfaas.ledger import rounds

    await funded(store, 10)
    settler = Settler(db, fees=FeePolicy(fee_ppm=0))
    nodes = [keys(f"node-{n}") for n in range(12)]
    await record_tickets(
        db, [sign_channel("v1", n.key_id, seq=1, total_micro=5, keys=LESSEE) for n in nodes], now=T0 + 1
    )
    monkeypatch.setattr(rounds, "ROUND_PAGE", 4)
    read: list[int] = []
    due = rounds._due

    async def counted(*args: object, **kwargs: object) -> object:
        rows = await due(*args, **kwargs)  # type: ignore[arg-type]
        read.append(len(rows))
        return rows

    monkeypatch.setattr(rounds, "_due", counted)
    assert await settle_rests(settler, now=T0 + 1 + QUIET_S, quiet_s=QUIET_S) == 10  # two channels' worth
    assert sum(read) <= len(nodes)
    read.clear()
    assert await settle_rests(settler, now=T0 + 2 + QUIET_S, quiet_s=QUIET_S) == 0
    assert read == [0]  # the hold is dry: nothing is read at all
