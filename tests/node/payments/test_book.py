"""The node's voucher check: offline signature, key, expiry, and never more work than the budget."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from p2pfaas import signing, tickets
from p2pfaas.errors import Refused
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.policy import FeePolicy
from p2pfaas.messages import BundleHeader, InvokeRequest, Manifest, Receipt, Voucher
from p2pfaas.node.payments.book import UnpaidPolicy, VoucherBook, max_price_micro
from p2pfaas.node.payments.spend_log import SpendLog
from p2pfaas.node.payments.spends import LocalSpends, PaymentRequired, SpendStore
from p2pfaas.node.shared.tables import SharedTables
from p2pfaas.pricing import Prices
from p2pfaas.rpc import Forbidden
from tests.node.payments.conftest import keys

T0 = 1_700_000_000.0
DIGEST = "cd" * 32


ANCHOR, LESSEE, OWNER, NODE = keys("anchor"), keys("lessee"), keys("owner"), keys("node")
CAP = 10**9


def header(owner: KeyPair = OWNER) -> BundleHeader:
    manifest = Manifest("f", "1", "python3.11", "main:handler", 128, 10.0, True)
    return signing.sign(BundleHeader(manifest, DIGEST, 100, signer=b"", signature=b""), owner)


def voucher(
    budget: int = 1000, *, expires_at: float = T0 + 600, lessee: KeyPair = LESSEE, anchor: KeyPair = ANCHOR
) -> Voucher:
    return signing.sign(
        Voucher("v1", lessee.public.raw, budget, expires_at, signer=b"", signature=b""), anchor
    )


def request(
    invocation_id: str, v: Voucher | None, signer: KeyPair = LESSEE, timeout_s: float = 10.0
) -> InvokeRequest:
    unsigned = InvokeRequest(invocation_id, DIGEST, b"{}", timeout_s, v, signer=b"", signature=b"")
    # with the lessee's spend ticket when paid, for this node, capped well above its prices
    return tickets.signed_request(unsigned, signer, payee=NODE.key_id, max_price_micro=CAP)


def receipt(invocation_id: str, price_micro: int) -> Receipt:
    unsigned = Receipt(
        invocation_id, DIGEST, LESSEE.public.raw, "v1", True, 1, 1, 1, price_micro, b"", T0, b"", b""
    )
    return signing.sign(unsigned, NODE)


def book(**kwargs: Any) -> VoucherBook:
    return VoucherBook(
        anchor_key=ANCHOR.public.raw, fees=FeePolicy(fee_ppm=100_000), node_id=NODE.key_id, **kwargs
    )


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[SharedTables]:
    tables = SharedTables.create(workers=2, result_slots=8, voucher_slots=16, spill_dir=tmp_path / "spill")
    yield tables
    tables.close()
    tables.unlink()


@pytest.fixture(params=["local", "shared"])
def spends(request: pytest.FixtureRequest, shared: SharedTables) -> SpendStore:
    """Each store a book may keep its totals in: the same rules hold for both."""
    return LocalSpends() if request.param == "local" else shared.spends


def test_reservations_never_exceed_the_budget_and_receipts_free_the_rest(spends: SpendStore) -> None:
    b = book(spends=spends)
    v = voucher(1000)
    for n in range(3):  # 3 x (300 + 10% fee) = 990 <= 1000
        b.authorize(request(f"i{n}", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    with pytest.raises(PaymentRequired) as refused:
        b.authorize(request("i3", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    assert refused.value.status == 402
    assert b.remaining_micro("v1") == 10
    b.authorize(
        request("i0", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0
    )  # a retry: no 2nd hold
    b.charged(receipt("i0", 100))  # ran cheaper than its worst case
    b.charged(receipt("i1", 100))
    assert b.remaining_micro("v1") == 1000 - 110 - 110 - 330
    b.authorize(request("i3", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    b.release("i3")
    assert b.remaining_micro("v1") == 450


def test_forged_foreign_and_expiring_vouchers_are_refused() -> None:
    b = book()
    with pytest.raises(Forbidden):
        b.authorize(
            request("a", voucher(anchor=keys("fake anchor"))),
            header(),
            LESSEE.public.raw,
            max_price_micro=1,
            now=T0,
        )
    tampered = Voucher("v1", LESSEE.public.raw, 10**9, T0 + 600, ANCHOR.public.raw, voucher().signature)
    with pytest.raises(Forbidden):
        b.authorize(request("b", tampered), header(), LESSEE.public.raw, max_price_micro=1, now=T0)
    stolen = voucher(lessee=keys("someone else"))
    with pytest.raises(Forbidden):
        b.authorize(request("c", stolen), header(), LESSEE.public.raw, max_price_micro=1, now=T0)
    with pytest.raises(PaymentRequired):  # expires before a 10 s invocation could finish
        b.authorize(
            request("d", voucher(expires_at=T0 + 12)), header(), LESSEE.public.raw, max_price_micro=1, now=T0
        )


def test_a_paid_request_without_its_lessees_ticket_for_it_is_refused() -> None:
    """The anchor pays no receipt without the lessee's ticket: the node must not run such work."""
    b, v = book(), voucher(1000)
    good = request("i", v)
    assert good.ticket is not None
    other_payload = tickets.ticket_for(
        replace(good, payload=b"[1]"), LESSEE, payee=NODE.key_id, max_price_micro=CAP
    )
    bad = {
        "no spend ticket": signing.sign(replace(good, ticket=None), LESSEE),
        "another key": signing.sign(
            replace(
                good, ticket=tickets.ticket_for(good, keys("mallory"), payee=NODE.key_id, max_price_micro=CAP)
            ),
            LESSEE,
        ),
        "another invocation": signing.sign(replace(good, invocation_id="j"), LESSEE),
        "another request": signing.sign(replace(good, ticket=other_payload), LESSEE),
        "does not verify": signing.sign(
            replace(good, ticket=replace(good.ticket, signature=other_payload.signature)), LESSEE
        ),
        "voucher": signing.sign(
            replace(
                good,
                ticket=tickets.sign_ticket(
                    "i", "v2", good.ticket.request_sha256, LESSEE, payee=NODE.key_id, max_price_micro=CAP
                ),
            ),
            LESSEE,
        ),
    }
    for reason, paid in bad.items():
        with pytest.raises(Forbidden, match=reason):  # HTTP 403 (see tests/client/test_wallet.py)
            b.authorize(paid, header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    assert b.remaining_micro("v1") is None  # nothing reserved
    b.authorize(good, header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    assert b.remaining_micro("v1") == 1000 - 330


def test_without_a_voucher_nobody_runs_unless_the_volunteer_opts_in() -> None:
    """Hole 1 of issue #14: a lessee invoking its own function with no voucher was served for free
    by every node. Now a node runs paid work only, unless its volunteer lets owners (a devnet) or
    listed keys (its own) run unpaid."""
    paid_only = book()
    for caller in (OWNER, LESSEE):
        with pytest.raises(PaymentRequired, match="paid invocations only"):
            paid_only.authorize(
                request("a", None, caller), header(), caller.public.raw, max_price_micro=1, now=T0
            )
    assert UnpaidPolicy().describe() == "none"
    devnet = book(unpaid=UnpaidPolicy(owners=True))
    devnet.authorize(request("b", None, OWNER), header(), OWNER.public.raw, max_price_micro=1, now=T0)
    with pytest.raises(Forbidden, match="owner"):  # a stranger on a devnet: not let in (403)
        devnet.authorize(request("c", None), header(), LESSEE.public.raw, max_price_micro=1, now=T0)
    own = book(unpaid=UnpaidPolicy(keys=frozenset({LESSEE.key_id})))
    own.authorize(request("d", None), header(), LESSEE.public.raw, max_price_micro=1, now=T0)
    with pytest.raises(PaymentRequired):
        own.authorize(request("e", None, OWNER), header(), OWNER.public.raw, max_price_micro=1, now=T0)
    assert own.unpaid.describe() == "keys" and devnet.unpaid.describe() == "owners"


def test_the_worst_case_covers_what_a_timed_out_invocation_is_billed() -> None:
    prices = Prices(per_cpu_s_micro=1_000, per_gb_s_micro=500)
    worst = max_price_micro(prices, timeout_s=10.0, memory_mb=256, cpus=1.0)
    # Killed a little late, at 10.5 s, having used all its CPU and memory all along:
    billed = prices.charge_micro(cpu_ms=10_500, peak_memory_mb=256, wall_ms=10_500)
    assert billed < worst
    assert max_price_micro(prices, timeout_s=1.0, memory_mb=128, cpus=0.5) < worst


def test_a_restarted_node_remembers_what_it_charged(tmp_path: Path) -> None:
    log = SpendLog(tmp_path / "node" / "voucher-spend.log")
    assert log.load(now=T0) == {}
    first = book()
    v = voucher(1000)
    for n in range(3):
        first.authorize(request(f"i{n}", v), header(), LESSEE.public.raw, max_price_micro=200, now=T0)
        charge = first.charged(receipt(f"i{n}", 200))
        log.append("v1", budget_micro=1000, expires_at=v.expires_at, charge_micro=charge)
    log.append("old", budget_micro=5, expires_at=T0 - 10**6, charge_micro=5)  # long expired: forgotten
    with log.path.open("a") as file:
        file.write('{"v": "v1", "b": 1000, "e"')  # a crash mid-line
    # The node restarts: a new book, restored from the log, has 1000 - 3 x 220 = 340 left.
    second = book()
    for voucher_id, (budget, expires_at, charged) in log.load(now=T0).items():
        second.spends.restore(
            voucher_id, budget_micro=budget, expires_at=expires_at, charged_micro=charged, now=T0
        )
    assert second.remaining_micro("v1") == 340 and second.remaining_micro("old") is None
    with pytest.raises(PaymentRequired):
        second.authorize(request("i9", v), header(), LESSEE.public.raw, max_price_micro=400, now=T0)
    second.authorize(request("i9", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    assert log.load(now=T0) == {"v1": (1000, v.expires_at, 660)}  # compacted


def test_two_books_on_one_segment_share_a_budget(shared: SharedTables) -> None:
    """Two worker processes' books: each settles only its own reservations, the budget is one."""
    first, second = book(spends=shared.spends, worker=0), book(spends=shared.spends, worker=1)
    v = voucher(1000)
    first.authorize(request("i0", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    first.authorize(request("i1", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    second.authorize(request("i2", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    for b in (first, second):
        with pytest.raises(PaymentRequired, match="has 10 micro-credits left on this node"):
            b.authorize(request("i3", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    assert second.charged(receipt("i0", 100)) == 0  # not its reservation
    second.release("i1")
    assert first.remaining_micro("v1") == second.remaining_micro("v1") == 10
    assert first.charged(receipt("i0", 100)) == 110
    assert second.charged(receipt("i2", 100)) == 110
    second.authorize(request("i3", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    first.release("i1")
    assert second.remaining_micro("v1") == 1000 - 110 - 110 - 330
    assert first.spend_of("v1") == second.spend_of("v1") == (1000, v.expires_at)


def test_a_dead_workers_book_takes_its_reservations_with_it(shared: SharedTables) -> None:
    """Worker 1's process dies holding two reservations: the node drops them, keeps what it charged."""
    primary, doomed = book(spends=shared.spends, worker=0), book(spends=shared.spends, worker=1)
    v = voucher(1000)
    doomed.authorize(request("i0", v), header(), LESSEE.public.raw, max_price_micro=100, now=T0)
    assert doomed.charged(receipt("i0", 50)) == 55
    doomed.authorize(request("i1", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    doomed.authorize(request("i2", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    primary.authorize(request("i3", v), header(), LESSEE.public.raw, max_price_micro=100, now=T0)
    with pytest.raises(PaymentRequired, match="has 175 micro-credits left"):
        primary.authorize(request("i4", v), header(), LESSEE.public.raw, max_price_micro=300, now=T0)
    assert shared.spends.release_worker(1) == 660  # `doomed` is gone with its process
    spend = shared.spends.get("v1")
    assert spend is not None and (spend.committed_micro, spend.charged_micro) == (55 + 110, 55)
    primary.authorize(request("i4", v), header(), LESSEE.public.raw, max_price_micro=700, now=T0)
    assert primary.remaining_micro("v1") == 1000 - 55 - 110 - 770 == 65
    restarted = book(spends=shared.spends, worker=1)  # the worker's next process starts afresh
    restarted.authorize(request("i5", v), header(), LESSEE.public.raw, max_price_micro=50, now=T0)
    assert primary.charged(receipt("i3", 100)) == 110
    assert restarted.charged(receipt("i5", 10)) == 11
    assert primary.remaining_micro("v1") == 1000 - 55 - 110 - 770 - 11


def test_a_full_voucher_table_refuses_with_payment_required(shared: SharedTables) -> None:
    b = book(spends=shared.spends)  # 16 vouchers fit in this table's one set
    for n in range(16):
        shared.spends.reserve(
            f"other {n}", budget_micro=1, expires_at=T0 + 600, cost_micro=0, worker=0, now=T0
        )
    with pytest.raises(PaymentRequired, match="voucher table is full"):
        b.authorize(request("i0", voucher(1000)), header(), LESSEE.public.raw, max_price_micro=300, now=T0)


def test_a_ticket_capped_below_the_nodes_worst_case_is_refused() -> None:
    """Found in review: a cap of 0 made the node run the call for nothing (it reserved nothing and
    priced the receipt at 0, which the anchor does not pay)."""
    b, v = book(), voucher(1000)
    for cap in (0, 1, 199):
        unsigned = InvokeRequest(f"c{cap}", DIGEST, b"{}", 10.0, v, signer=b"", signature=b"")
        cheap = tickets.signed_request(unsigned, LESSEE, payee=NODE.key_id, max_price_micro=cap)
        with pytest.raises(PaymentRequired, match="caps this invocation"):
            b.authorize(cheap, header(), LESSEE.public.raw, max_price_micro=200, now=T0)
    b.authorize(request("ok", v), header(), LESSEE.public.raw, max_price_micro=200, now=T0)


def test_an_id_that_ran_and_was_charged_does_not_run_again() -> None:
    """Found in review: once the router forgot a result, the same id with a new payload ran again
    with nothing reserved, and its receipt was a duplicate the anchor does not pay."""
    b, v = book(), voucher(1000)
    b.authorize(request("once", v), header(), LESSEE.public.raw, max_price_micro=200, now=T0)
    b.authorize(request("once", v), header(), LESSEE.public.raw, max_price_micro=200, now=T0)  # still running
    assert b.charged(receipt("once", 100)) > 0
    with pytest.raises(Refused, match="already ran"):
        b.authorize(request("once", v), header(), LESSEE.public.raw, max_price_micro=200, now=T0)
