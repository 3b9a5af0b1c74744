"""The anchor's ledger routes over real HTTP on 127.0.0.1, with real tokens, on SQLite and MariaDB.

Who may do what is part of what is tested: an account never reads or spends another's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from p2pfaas import signing
from p2pfaas.channels import sign_channel
from p2pfaas.cli.main import main
from p2pfaas.clock import wall_time
from p2pfaas.db import Database
from p2pfaas.errors import NotFound, Refused
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.rounds import settle_rests
from p2pfaas.ledger.wire import (
    AnchorKey,
    Balances,
    BatchResult,
    EarningsReport,
    GrantRequest,
    PayoutInfo,
    PayoutRequest,
    PayoutUpdate,
    TopUpRequest,
    TransferDone,
    UsageReport,
    VoucherInfo,
    VoucherRequest,
)
from p2pfaas.messages import Ack, ChannelTickets, Receipt, ReceiptBatch, Voucher
from tests.anchor import ledgerkit
from tests.anchor.ledgerkit import Anchor
from tests.ledger import conftest as ledger_conftest
from tests.ledger.conftest import T0, keys, receipt, signed_for, voucher

# The ledger's own database fixture (fast retries, an exclusive MariaDB), and a real anchor app on it.
db = ledger_conftest.db
anchor = ledgerkit.anchor


async def test_grant_voucher_settle_and_payout_end_to_end(anchor: Anchor, db: Database) -> None:
    a = anchor
    lessee, node = keys("alice-key"), keys("bob-node")
    done = await a.call(
        "POST",
        "/v1/ledger/grants",
        TransferDone,
        GrantRequest("alice", 10_000, "g1", "welcome"),
        as_user="root",
    )
    assert (done.balance_micro, done.repeat) == (10_000, False)
    again = await a.call(
        "POST",
        "/v1/ledger/grants",
        TransferDone,
        GrantRequest("alice", 10_000, "g1", "welcome"),
        as_user="root",
    )
    assert (again.balance_micro, again.repeat) == (10_000, True)

    request = VoucherRequest(lessee.public.raw, 5_000, 600.0, "req-1")
    with pytest.raises(Refused) as refused:  # the key is not alice's yet
        await a.call("POST", "/v1/vouchers", Voucher, request, as_user="alice")
    assert refused.value.status == 403
    await a.accounts.bind_key(a.user_ids["alice"], lessee.public.raw, kind="lessee", label="laptop", now=T0)
    await a.accounts.bind_key(a.user_ids["bob"], node.public.raw, kind="node", label="", now=T0)
    voucher = await a.call("POST", "/v1/vouchers", Voucher, request, as_user="alice")
    anchor_key = await a.call("GET", "/v1/anchor-key", AnchorKey)
    assert signing.verify(voucher).raw == anchor_key.public_key
    assert await a.call("POST", "/v1/vouchers", Voucher, request, as_user="alice") == voucher  # idempotent
    with pytest.raises(Refused):  # mallory cannot spend with alice's key
        await a.call("POST", "/v1/vouchers", Voucher, request, as_user="mallory")

    receipts = tuple(
        receipt(f"inv-{n}", node=node, lessee=lessee, voucher_id=voucher.voucher_id, price_micro=1_000)
        for n in range(5)
    )
    batch = signing.sign(ReceiptBatch(receipts, b"", b"", channels=signed_for(receipts, lessee)), node)
    result = await a.call("POST", "/v1/receipts", BatchResult, batch)
    assert sorted(result.paid) == ["inv-0", "inv-1", "inv-2", "inv-3"]  # 4 x 1100 fits 5000; the fifth not
    assert [(r.invocation_id, r.reason) for r in result.refused] == [("inv-4", "over-budget")]
    replay = await a.call("POST", "/v1/receipts", BatchResult, batch)
    assert replay.paid == () and sorted(replay.duplicate) == ["inv-0", "inv-1", "inv-2", "inv-3"]

    # A receipt the node invented: no ticket, or one not from the voucher's lessee. Nothing paid.
    invented = (
        signing.sign(replace(receipts[4], invocation_id="invented-1", ticket=None), node),
        receipt("invented-2", node=node, lessee=lessee, voucher_id=voucher.voucher_id, price_micro=1,
                ticket_by=keys("mallory")),
    )  # fmt: skip
    result = await a.call(
        "POST", "/v1/receipts", BatchResult, signing.sign(ReceiptBatch(invented, b"", b""), node)
    )
    assert result.paid == () and {(r.invocation_id, r.reason) for r in result.refused} == {
        ("invented-1", "bad-ticket"),
        ("invented-2", "bad-ticket"),
    }

    forged = signing.sign(ReceiptBatch(receipts[:1], signer=b"", signature=b""), keys("mallory-node"))
    with pytest.raises(Refused) as refused:
        await a.call("POST", "/v1/receipts", BatchResult, forged)
    assert refused.value.status == 403

    info = await a.call("GET", f"/v1/vouchers/{voucher.voucher_id}", VoucherInfo, as_user="alice")
    assert (info.remaining_micro, info.state) == (600, "open")
    with pytest.raises(NotFound):
        await a.call("GET", f"/v1/vouchers/{voucher.voucher_id}", VoucherInfo, as_user="mallory")

    bob = await a.call("GET", "/v1/ledger/balance", Balances, as_user="bob")
    assert bob.accounts[0].balance_micro == 4_000  # earned into bob's own account: he claimed the node
    with pytest.raises(Refused):  # a lessee token holds no payout scope
        await a.call("POST", "/v1/payouts", PayoutInfo, PayoutRequest("p1", 0, 100, "iban"), as_user="alice")
    stranger = await a.call("GET", "/v1/ledger/balance", Balances, as_user="alice")
    with pytest.raises(Refused):  # bob cannot pay out alice's account
        await a.call(
            "POST",
            "/v1/payouts",
            PayoutInfo,
            PayoutRequest("p1", stranger.accounts[0].account_id, 1, "x"),
            as_user="bob",
        )
    payout = await a.call(
        "POST", "/v1/payouts", PayoutInfo, PayoutRequest("p1", 0, 3_000, "iban"), as_user="bob"
    )
    assert payout.state == "pending"
    with pytest.raises(NotFound):
        await a.call("GET", f"/v1/payouts/{payout.payout_id}", PayoutInfo, as_user="alice")
    with pytest.raises(Refused):
        await a.call(
            "POST", f"/v1/payouts/{payout.payout_id}/state", PayoutInfo, PayoutUpdate("paid"), as_user="bob"
        )
    paid = await a.call(
        "POST", f"/v1/payouts/{payout.payout_id}/state", PayoutInfo, PayoutUpdate("paid"), as_user="root"
    )
    assert paid.state == "paid"
    assert (await a.call("GET", f"/v1/payouts/{payout.payout_id}", PayoutInfo, as_user="bob")).state == "paid"
    assert (await a.call("GET", "/v1/ledger/balance", Balances, as_user="bob")).accounts[
        0
    ].balance_micro == 1_000
    assert await audit(db) == []


async def alices_voucher(a: Anchor, lessee: KeyPair) -> Voucher:
    """Alice granted 10,000 micro-credits, `lessee` bound to her, and a voucher of 5,000 for it."""
    await a.call(
        "POST", "/v1/ledger/grants", TransferDone, GrantRequest("alice", 10_000, "g1", ""), as_user="root"
    )
    await a.accounts.bind_key(a.user_ids["alice"], lessee.public.raw, kind="lessee", label="", now=T0)
    request = VoucherRequest(lessee.public.raw, 5_000, 600.0, "req-1")
    return await a.call("POST", "/v1/vouchers", Voucher, request, as_user="alice")


async def test_a_lessee_hands_the_anchor_tickets_its_node_never_got(anchor: Anchor, db: Database) -> None:
    """The node ran two calls, but the lessee's tickets never reached it (the node's home went dark):
    its receipts wait `unsigned` until the lessee hands the anchor the tickets (POST /v1/channels).
    Forged, foreign and older tickets change nothing."""
    a = anchor
    lessee, node = keys("alice-key"), keys("bob-node")
    voucher = await alices_voucher(a, lessee)
    receipts = tuple(
        receipt(f"inv-{n}", node=node, lessee=lessee, voucher_id=voucher.voucher_id, price_micro=1_000)
        for n in range(2)
    )
    batch = signing.sign(ReceiptBatch(receipts, b"", b""), node)
    result = await a.call("POST", "/v1/receipts", BatchResult, batch)
    assert result.paid == () and sorted(result.unsigned) == ["inv-0", "inv-1"]

    node_id, vid = node.public.key_id, voucher.voucher_id
    first = sign_channel(vid, node_id, seq=1, total_micro=1_000, keys=lessee)
    both = sign_channel(vid, node_id, seq=2, total_micro=2_000, keys=lessee)
    foreign = sign_channel(vid, node_id, seq=3, total_micro=5_000, keys=keys("mallory"))
    with pytest.raises(Refused) as refused:  # someone else signs for alice's voucher: refused, whole
        await a.call("POST", "/v1/channels", Ack, ChannelTickets((both, foreign), (voucher,)))
    assert refused.value.status == 403
    with pytest.raises(Refused) as refused:  # a ticket altered after signing
        await a.call("POST", "/v1/channels", Ack, ChannelTickets((replace(both, total_micro=4_000),), ()))
    assert refused.value.status == 403
    with pytest.raises(NotFound):
        await a.call("POST", "/v1/channels", Ack, ChannelTickets((sign_channel("v-none", node_id, seq=1,
                     total_micro=1, keys=lessee),), ()))  # fmt: skip
    assert (await a.call("POST", "/v1/receipts", BatchResult, batch)).unsigned == result.unsigned

    assert (
        "raised 1 of 2"
        in (await a.call("POST", "/v1/channels", Ack, ChannelTickets((first, both), ()))).detail
    )
    assert "raised 0 of 1" in (await a.call("POST", "/v1/channels", Ack, ChannelTickets((first,), ()))).detail
    again = await a.call("POST", "/v1/receipts", BatchResult, batch)
    assert sorted(again.paid) == ["inv-0", "inv-1"] and again.unsigned == ()
    assert await audit(db) == []


async def test_top_ups_and_grants_need_the_right_caller(anchor: Anchor, db: Database) -> None:
    a = anchor
    with pytest.raises(Refused) as refused:
        await a.call(
            "POST", "/v1/ledger/grants", TransferDone, GrantRequest("alice", 1, "g", ""), as_user="alice"
        )
    assert refused.value.status == 403
    with pytest.raises(Refused) as refused:  # no token at all
        await a.call("POST", "/v1/ledger/grants", TransferDone, GrantRequest("alice", 1, "g", ""))
    assert refused.value.status == 401
    with pytest.raises(Refused):  # a lessee cannot vouch for its own manual payment
        await a.call(
            "POST",
            "/v1/ledger/topups",
            TransferDone,
            TopUpRequest("manual", "", 500, "cash-1"),
            as_user="alice",
        )
    done = await a.call(
        "POST",
        "/v1/ledger/topups",
        TransferDone,
        TopUpRequest("manual", "alice", 500, "bank-7"),
        as_user="root",
    )
    assert done.balance_micro == 500
    with pytest.raises(NotFound):
        await a.call(
            "POST", "/v1/ledger/grants", TransferDone, GrantRequest("nobody", 1, "g", ""), as_user="root"
        )
    assert await audit(db) == []


async def test_the_anchor_returns_expired_vouchers_unspent_budgets(anchor: Anchor, db: Database) -> None:
    a = anchor
    lessee = keys("alice-key")
    await a.accounts.bind_key(a.user_ids["alice"], lessee.public.raw, kind="lessee", label="", now=T0)
    await a.call(
        "POST", "/v1/ledger/grants", TransferDone, GrantRequest("alice", 1_000, "g", ""), as_user="root"
    )
    old = voucher("long-gone", lessee, 400, expires_at=T0, anchor=keys("anchor"))  # expired years ago
    alice_account = (
        (await a.call("GET", "/v1/ledger/balance", Balances, as_user="alice")).accounts[0].account_id
    )
    await a.api.store.open_voucher(
        old, lessee_account_id=alice_account, owner_user_id=a.user_ids["alice"], now=T0
    )
    assert (await a.call("GET", "/v1/ledger/balance", Balances, as_user="alice")).accounts[
        0
    ].balance_micro == 600
    assert await a.api.release_due() == 1  # one round of the anchor's background task
    assert await a.api.release_due() == 0
    assert (await a.call("GET", "/v1/ledger/balance", Balances, as_user="alice")).accounts[
        0
    ].balance_micro == 1_000
    assert await a.api.store.voucher_remaining("long-gone") == (0, "closed")
    assert await audit(db) == []


async def test_a_lessees_bill_comes_from_the_ledger_and_adds_up(
    anchor: Anchor, db: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a = anchor
    lessee, node = keys("alice-key"), keys("bob-node")
    voucher = await alices_voucher(a, lessee)
    other_function = "cd" * 32

    def paid(n: int, price: int, digest: str | None = None) -> Receipt:
        r = receipt(f"inv-{n}", node=node, lessee=lessee, voucher_id=voucher.voucher_id, price_micro=price)
        return (
            r if digest is None else signing.sign(replace(r, digest=digest, signer=b"", signature=b""), node)
        )

    receipts = (paid(0, 1_000), paid(1, 1_000), paid(2, 1_000), paid(3, 500, other_function))
    batch = signing.sign(ReceiptBatch(receipts, b"", b"", channels=signed_for(receipts, lessee)), node)
    assert len((await a.call("POST", "/v1/receipts", BatchResult, batch)).paid) == 4
    # The lessee signed for one more result whose receipt never came: a round pays it as a rest.
    (more,) = signed_for((*receipts, paid(4, 200)), lessee)
    await a.call("POST", "/v1/channels", Ack, ChannelTickets((more,), (voucher,)))
    assert await settle_rests(a.api.settler, now=wall_time() + 3600, quiet_s=60) == 200

    bill = await a.call("GET", "/v1/ledger/usage", UsageReport, as_user="alice")
    assert [(line.key, line.calls, line.cpu_ms, line.mb_ms, line.charged_micro) for line in bill.lines] == [
        ("(channel rests)", 0, 0, 0, 220),
        (f"(function {'ab' * 6})", 3, 30, 3 * 20 * 12, 3_300),  # its bundle is not in this registry
        (f"(function {'cd' * 6})", 1, 10, 20 * 12, 550),
    ]
    spent = sum(line.charged_micro for line in bill.lines)
    assert (bill.bought_micro, bill.spent_micro, bill.returned_micro) == (5_000, spent, 0)
    assert bill.bought_micro == bill.spent_micro + bill.returned_micro + bill.held_micro
    by_day = await a.call("GET", "/v1/ledger/usage?by=day", UsageReport, as_user="alice")
    assert (
        sum(line.calls for line in by_day.lines) == 4 and sum(x.charged_micro for x in by_day.lines) == spent
    )
    days = {time.strftime("%Y-%m-%d", time.gmtime(wall_time() - lag)) for lag in (0, 600)}  # near midnight
    assert {line.key for line in by_day.lines} - {"(channel rests)"} <= days
    later = await a.call("GET", f"/v1/ledger/usage?since={wall_time() + 7200}", UsageReport, as_user="alice")
    assert later.lines == () and later.spent_micro == spent  # the totals are all-time
    stranger = await a.call("GET", "/v1/ledger/usage", UsageReport, as_user="mallory")
    assert stranger.lines == () and stranger.bought_micro == 0
    for bad in ("by=week", "since=-1", "since=soon", "since=nan"):
        with pytest.raises(Refused) as refused:
            await a.call("GET", f"/v1/ledger/usage?{bad}", UsageReport, as_user="alice")
        assert refused.value.status == 400
    with pytest.raises(Refused):
        await a.call("GET", "/v1/ledger/usage", UsageReport)  # no token: no bill

    # The CLI prints the same lines, and a CSV.
    monkeypatch.setenv("P2PFAAS_TOKEN", a.tokens["alice"])
    assert await asyncio.to_thread(main, ["account", "usage", "--anchor", a.url, "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert (
        rows[0] == "function,calls,cpu_s,gb_s,credits"
        and rows[1] == "(channel rests),0,0.000,0.000000,0.000220"
    )
    assert (
        await asyncio.to_thread(main, ["account", "usage", "--anchor", a.url, "--since", "2000-01-01"]) == 0
    )
    out, err = capsys.readouterr()
    assert "0.004070" in out and "bought 0.005000 = spent 0.004070" in err
    assert await audit(db) == []

    # The volunteer's side (#21, `node earnings`): what bob's node was paid, by node and by day.
    await a.accounts.bind_key(a.user_ids["bob"], node.public.raw, kind="node", label="", now=T0)
    earned = await a.call("GET", "/v1/ledger/earnings", EarningsReport, as_user="bob")
    assert [(line.key, line.calls, line.charged_micro) for line in earned.lines] == [
        ("(channel rests)", 0, 200),
        (node.public.key_id, 4, 3_500),  # the node price, without the anchor's fee
    ]
    daily = await a.call("GET", "/v1/ledger/earnings?by=day", EarningsReport, as_user="bob")
    assert sum(line.charged_micro for line in daily.lines) == 3_700
    assert (await a.call("GET", "/v1/ledger/earnings", EarningsReport, as_user="alice")).lines == ()
    with pytest.raises(Refused):
        await a.call("GET", "/v1/ledger/earnings?by=function", EarningsReport, as_user="bob")
    monkeypatch.setenv("P2PFAAS_TOKEN", a.tokens["bob"])
    assert await asyncio.to_thread(main, ["node", "earnings", "--anchor", a.url, "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "node,calls,cpu_s,gb_s,credits" and rows[2].startswith(node.public.key_id + ",4,")
