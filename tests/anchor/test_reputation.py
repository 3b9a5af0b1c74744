"""Trust at the anchor over 127.0.0.1, on SQLite and MariaDB: votes decided from node-signed receipts,
reputations moved once per group, the ledger paying only the majority's replicas, advert lies proven."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import web

from p2pfaas import codec, signing, tickets
from p2pfaas.anchor.accounts import AccountStore
from p2pfaas.anchor.accounts_api import set_public_url
from p2pfaas.anchor.app import AnchorSettings, make_app
from p2pfaas.anchor.store import RegistryStore
from p2pfaas.anchor.tokens import encode_scopes, mint_token, role_scopes
from p2pfaas.anchor.trust_store import TrustStore, replica_gate
from p2pfaas.clock import wall_time
from p2pfaas.codec import Message
from p2pfaas.db import Database
from p2pfaas.dht.records import advert_key, make_record
from p2pfaas.dht.wire import Capacity, Record
from p2pfaas.errors import Refused
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import ReceiptClaim
from p2pfaas.ledger.settlement import Settler
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.ledger.wire import Balances, BatchResult, GrantRequest, TransferDone, VoucherRequest
from p2pfaas.messages import Ack, InvokeRequest, Receipt, ReceiptBatch, Voucher, request_sha256
from p2pfaas.rpc import call
from p2pfaas.trust.replica_ids import replica_id
from p2pfaas.trust.wire import (
    AdvertLieReport,
    NodeReputation,
    ReplicationReport,
    ReplicationVerdict,
    ReputationList,
)
from tests.anchor.conftest import FAST_HASHER
from tests.ledger.conftest import signed_for

R = TypeVar("R", bound=Message)
DIGEST = "cd" * 32
GROUP = "0f" * 16


def keys(seed: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(seed.encode()).digest())


LESSEE, OTHER = keys("alice-key"), keys("mallory-key")
N1, N2, N3 = keys("node-1"), keys("node-2"), keys("node-3")


@dataclass
class Live:
    url: str
    db: Database
    session: aiohttp.ClientSession
    tokens: dict[str, str]

    async def call(
        self, method: str, path: str, expect: type[R], msg: Message | None = None, *, as_user: str = ""
    ) -> R:
        headers = {"Authorization": f"Bearer {self.tokens[as_user]}"} if as_user else None
        return await call(self.session, method, self.url + path, expect, msg, timeout_s=10, headers=headers)

    async def receipts(self, node: KeyPair, *receipts: Receipt) -> BatchResult:
        channels = signed_for(receipts, LESSEE)  # the lessee received every one of these results
        batch = signing.sign(ReceiptBatch(tuple(receipts), b"", b"", channels=channels), node)
        return await self.call("POST", "/v1/receipts", BatchResult, batch)

    async def reputation(self, node: KeyPair) -> NodeReputation:
        return await self.call("GET", f"/v1/reputation/{node.key_id}", NodeReputation)


@pytest.fixture
async def live(db: Database) -> AsyncIterator[Live]:
    app = make_app(db, settings=AnchorSettings(hasher=FAST_HASHER))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        set_public_url(app, f"http://127.0.0.1:{port}")  # what key claims must name
        async with aiohttp.ClientSession() as session:
            accounts, tokens = AccountStore(db), {}
            for name, role in (("root", "operator"), ("alice", "lessee")):
                user = await accounts.create_user(name, password_hash="x", role=role, now=0.0)
                minted = mint_token()
                await accounts.add_token(
                    user.user_id,
                    token_id=minted.token_id,
                    token_hash=minted.token_hash,
                    scopes=encode_scopes(role_scopes(role)),
                    now=0.0,
                    expires_at=1e12,
                )
                tokens[name] = minted.secret_token
                if name == "alice":
                    await accounts.bind_key(user.user_id, LESSEE.public.raw, kind="lessee", label="", now=0.0)
            yield Live(f"http://127.0.0.1:{port}", db, session, tokens)
    finally:
        await runner.cleanup()


async def funded_voucher(live: Live) -> Voucher:
    await live.call(
        "POST", "/v1/ledger/grants", TransferDone, GrantRequest("alice", 100_000, "g", ""), as_user="root"
    )
    return await live.call(
        "POST",
        "/v1/vouchers",
        Voucher,
        VoucherRequest(LESSEE.public.raw, 50_000, 600.0, "v1"),
        as_user="alice",
    )


def receipt(
    invocation_id: str,
    node: KeyPair,
    voucher_id: str,
    result: bytes,
    *,
    price: int = 1_000,
    payload: bytes | None = b"{}",
) -> Receipt:
    """A node-signed receipt of running `payload` (None: a receipt from before request hashes)."""
    ran = b"" if payload is None else request_sha256(request_for(invocation_id, payload))
    return signing.sign(
        Receipt(
            invocation_id=invocation_id,
            digest=DIGEST,
            lessee_key=LESSEE.public.raw,
            voucher_id=voucher_id,
            ok=True,
            cpu_ms=10,
            peak_memory_mb=20,
            wall_ms=12,
            price_micro=price,
            result_sha256=hashlib.sha256(result).digest(),
            issued_at=wall_time(),
            signer=b"",
            signature=b"",
            request_sha256=ran,
            ticket=None
            if payload is None
            else tickets.sign_ticket(
                invocation_id, voucher_id, ran, LESSEE, payee=node.key_id, max_price_micro=price
            ),
        ),
        node,
    )


def request_for(invocation_id: str, payload: bytes) -> InvokeRequest:
    unsigned = InvokeRequest(invocation_id, DIGEST, payload, 30.0, None, signer=b"", signature=b"")
    return signing.sign(unsigned, LESSEE)


def report(
    *receipts: Receipt, lessee: KeyPair = LESSEE, group: str = GROUP, quorum: int = 2
) -> ReplicationReport:
    return signing.sign(ReplicationReport(group, quorum, tuple(receipts), signer=b"", signature=b""), lessee)


async def test_only_the_majoritys_replicas_are_paid_and_reputations_move_once(live: Live) -> None:
    voucher = await funded_voucher(live)
    r1 = receipt(replica_id(GROUP, 1), N1, voucher.voucher_id, b"42")
    r2 = receipt(replica_id(GROUP, 2), N2, voucher.voucher_id, b"41")  # the liar
    r3 = receipt(replica_id(GROUP, 3), N3, voucher.voucher_id, b"42")
    plain = receipt("f" * 32, N1, voucher.voucher_id, b"x")
    # Before the vote: replicas are held (neither paid nor refused, so the node sends them again);
    # an ordinary invocation is paid at once.
    first = await live.receipts(N1, r1, plain)
    assert (first.paid, first.duplicate, first.refused) == (("f" * 32,), (), ())
    held = await live.receipts(N2, r2)
    assert (held.paid, held.refused) == ((), ())

    verdict = await live.call("POST", "/v1/replication", ReplicationVerdict, report(r1, r2, r3))
    assert verdict.outcome == "agreed" and verdict.first_report
    assert verdict.result_sha256 == hashlib.sha256(b"42").digest()
    assert verdict.agreeing == tuple(sorted((N1.key_id, N3.key_id)))
    assert verdict.dissenting == (N2.key_id,)

    assert (await live.receipts(N1, r1)).paid == (r1.invocation_id,)
    assert (await live.receipts(N3, r3)).paid == (r3.invocation_id,)
    outvoted = await live.receipts(N2, r2)
    assert outvoted.paid == () and [(r.invocation_id, r.reason) for r in outvoted.refused] == [
        (r2.invocation_id, "outvoted")
    ]
    # N1 cannot collect N2's replica either: the vote names who ran it.
    stolen = receipt(replica_id(GROUP, 2), N1, voucher.voucher_id, b"42")
    assert [r.reason for r in (await live.receipts(N1, stolen)).refused] == ["outvoted"]

    for node, expected in ((N1, (1, 0, 1)), (N2, (0, 1, 0)), (N3, (1, 0, 1))):
        rep = await live.reputation(node)
        assert (rep.agreements, rep.disagreements, rep.consecutive_valid) == expected
        assert rep.trust_probability == 0.0  # far from BOINC's threshold of 10
    again = await live.call("POST", "/v1/replication", ReplicationVerdict, report(r1, r2, r3))
    assert not again.first_report and again.dissenting == (N2.key_id,)
    assert (await live.reputation(N1)).agreements == 1  # a replayed report counts nothing
    listing = await live.call("GET", f"/v1/reputation?node={N1.key_id}&node={N2.key_id}", ReputationList)
    assert [n.node_id for n in listing.nodes] == sorted((N1.key_id, N2.key_id))
    assert await audit(live.db) == []


async def test_an_inconclusive_vote_proves_nobody_wrong(live: Live) -> None:
    voucher = await funded_voucher(live)
    r1 = receipt(replica_id(GROUP, 1), N1, voucher.voucher_id, b"a")
    r2 = receipt(replica_id(GROUP, 2), N2, voucher.voucher_id, b"b")
    verdict = await live.call("POST", "/v1/replication", ReplicationVerdict, report(r1, r2))
    assert verdict.outcome == "inconclusive" and verdict.agreeing == verdict.dissenting == ()
    assert (await live.receipts(N1, r1)).paid == (r1.invocation_id,)
    assert (await live.reputation(N2)).disagreements == 0


async def test_bad_reports_are_refused(live: Live) -> None:
    voucher = await funded_voucher(live)
    r1 = receipt(replica_id(GROUP, 1), N1, voucher.voucher_id, b"a")
    r2 = receipt(replica_id(GROUP, 2), N2, voucher.voucher_id, b"a")

    async def status(msg: ReplicationReport) -> int:
        try:
            await live.call("POST", "/v1/replication", ReplicationVerdict, msg)
        except Refused as refused:
            return refused.status
        return 200

    assert await status(report(r1, r2, lessee=OTHER)) == 403  # not the receipts' lessee
    assert await status(report(r1)) == 400  # one replica is no vote
    assert await status(report(r1, r2, quorum=1)) == 400
    assert await status(report(r1, r2, group="1" * 32)) == 400  # not replicas of this group
    twice = receipt(replica_id(GROUP, 3), N1, voucher.voucher_id, b"a")
    assert await status(report(r1, r2, twice)) == 400  # N1 would vote twice
    forged = replace(r2, result_sha256=hashlib.sha256(b"b").digest())
    assert await status(report(r1, forged)) == 403  # the node did not sign that
    other_bundle = signing.sign(replace(r2, digest="ee" * 32, signer=b"", signature=b""), N2)
    assert await status(report(r1, other_bundle)) == 400
    assert (await live.reputation(N1)).agreements == 0


async def test_a_lessee_sending_replicas_different_inputs_cannot_make_an_honest_node_a_dissenter(
    live: Live,
) -> None:
    """Two honest nodes ran what they were sent; the lessee sent N2 another payload, so N2's correct
    answer differs. The receipts name the requests they ran: the report is refused, nobody's record
    moves, and the replicas stay held (paid after the hold) rather than outvoted."""
    voucher = await funded_voucher(live)
    r1 = receipt(replica_id(GROUP, 1), N1, voucher.voucher_id, b"42", payload=b"[6, 7]")
    r2 = receipt(replica_id(GROUP, 2), N2, voucher.voucher_id, b"40", payload=b"[5, 8]")
    r3 = receipt(replica_id(GROUP, 3), N3, voucher.voucher_id, b"42", payload=b"[6, 7]")
    with pytest.raises(Refused, match="different requests") as refused:
        await live.call("POST", "/v1/replication", ReplicationVerdict, report(r1, r2, r3))
    assert refused.value.status == 400
    # Rewriting N2's request hash to match breaks N2's signature: the lessee cannot hide the swap.
    relabelled = replace(r2, request_sha256=r1.request_sha256)
    with pytest.raises(Refused) as forged:
        await live.call("POST", "/v1/replication", ReplicationVerdict, report(r1, relabelled, r3))
    assert forged.value.status == 403
    # Receipts from nodes that predate request hashes cannot prove one input either.
    old = receipt(replica_id(GROUP, 2), N2, voucher.voucher_id, b"40", payload=None)
    with pytest.raises(Refused, match="no request hash"):
        await live.call("POST", "/v1/replication", ReplicationVerdict, report(r1, old, r3))
    for node in (N1, N2, N3):
        rep = await live.reputation(node)
        assert (rep.agreements, rep.disagreements) == (0, 0)
    held = await live.receipts(N2, r2)
    assert (held.paid, held.refused) == ((), ())  # held, not outvoted: paid after the hold
    assert await TrustStore(live.db).verdicts(GROUP) == {}  # no vote on record
    # The same request on every replica is voted on as before.
    honest = receipt(replica_id(GROUP, 2), N2, voucher.voucher_id, b"42", payload=b"[6, 7]")
    verdict = await live.call("POST", "/v1/replication", ReplicationVerdict, report(r1, honest, r3))
    assert verdict.outcome == "agreed" and verdict.dissenting == ()


async def test_replicas_without_a_vote_are_paid_after_the_hold(db: Database) -> None:
    claim = ReceiptClaim(replica_id(GROUP, 1), "v", LESSEE.public.raw, 100, 0.0)
    payable, outvoted = await replica_gate(db, N1.key_id, [claim], now=1000.0, hold_s=60.0)
    assert (payable, outvoted) == ([], [])
    # The node's resend a minute later (the anchor's clock, from when it first saw the receipt):
    assert await replica_gate(db, N1.key_id, [claim], now=1030.0, hold_s=60.0) == ([], [])
    assert await replica_gate(db, N1.key_id, [claim], now=1060.0, hold_s=60.0) == ([claim], [])


async def _greedy_advert(live: Live) -> Record:
    """N2's advert at 1000 per CPU-second and 500 per GB-second, for a registered 128 MB function."""
    registry = RegistryStore(live.db)
    await registry.register_lessee_key(LESSEE.public.raw, label="", now=0.0)
    await registry.put_bundle(
        digest=DIGEST,
        owner_key_id=LESSEE.key_id,
        name="f",
        version="1",
        runtime="python3.11",
        handler="main:handle",
        memory_mb=128,
        timeout_s=5.0,
        deterministic=True,
        signed_manifest=b"h",
        archive=b"a",
        now=0.0,
    )
    now = wall_time()
    capacity = Capacity(("python3.11",), 2, 2048, 2, 1_000, 500, 0.1, (0.0, 0.0), 1.0, False)
    advert = make_record(
        N2,
        key=advert_key("python3.11"),
        seq=int((now - 60) * 1000),
        expires_at=now + 600,
        host="127.0.0.1",
        port=1,
        capacity=capacity,
    )
    return advert


async def test_a_receipt_above_the_nodes_own_advert_is_a_proven_lie(live: Live) -> None:
    advert = await _greedy_advert(live)
    now, capacity = advert.seq / 1000.0 + 60, advert.capacity
    # 10 ms CPU at 1000/s and 128 MB for 12 ms at 500/GB-s: at most a few micro-credits.
    greedy = receipt("e" * 32, N2, "v", b"x", price=5_000)
    ack = await live.call("POST", "/v1/adverts/lies", Ack, AdvertLieReport(codec.encode(advert), greedy))
    assert "recorded" in ack.detail
    rep = await live.reputation(N2)
    assert (rep.lies, rep.consecutive_valid) == (1, -10)
    again = await live.call("POST", "/v1/adverts/lies", Ack, AdvertLieReport(codec.encode(advert), greedy))
    assert "before" in again.detail and (await live.reputation(N2)).lies == 1

    async def status(msg: AdvertLieReport) -> int:
        try:
            await live.call("POST", "/v1/adverts/lies", Ack, msg)
        except Refused as refused:
            return refused.status
        return 200

    honest = receipt("d" * 32, N2, "v", b"x", price=3)
    assert await status(AdvertLieReport(codec.encode(advert), honest)) == 400
    someone_else = receipt("c" * 32, N1, "v", b"x", price=5_000)
    assert await status(AdvertLieReport(codec.encode(advert), someone_else)) == 400
    later = make_record(
        N2,
        key=advert_key("python3.11"),
        seq=int((now + 60) * 1000),
        expires_at=now + 600,
        host="127.0.0.1",
        port=1,
        capacity=capacity,
    )
    assert await status(AdvertLieReport(codec.encode(later), greedy)) == 400  # published after the receipt
    assert await status(AdvertLieReport(b"junk", greedy)) == 400


async def test_a_proven_lie_costs_the_node_the_payment_not_only_its_streak(live: Live) -> None:
    """Issue #14, hole 9: a node that billed 50x its advert was paid, and a lie report only lowered
    its streak. The payment goes back to the lessee (it has not matured, so it is still there)."""
    advert = await _greedy_advert(live)
    voucher = await funded_voucher(live)
    greedy = receipt("f" * 32, N2, voucher.voucher_id, b"x", price=5_000)
    assert (await live.receipts(N2, greedy)).paid == ("f" * 32,)
    settler = Settler(live.db)
    node_account = await settler.earning_account(N2.key_id, now=wall_time())
    store = LedgerStore(live.db)
    alice = (await live.call("GET", "/v1/ledger/balance", Balances, as_user="alice")).accounts[0]
    assert (await store.account(node_account)).balance_micro == 5_000
    ack = await live.call("POST", "/v1/adverts/lies", Ack, AdvertLieReport(codec.encode(advert), greedy))
    # What it charged beyond its own advert (a few dozen micro-credits) goes back; the rest stays.
    kept = (await store.account(node_account)).balance_micro
    assert 0 < kept < 100 and f"{5_000 - kept} micro-credits clawed back" in ack.detail
    after = (await live.call("GET", "/v1/ledger/balance", Balances, as_user="alice")).accounts[0]
    assert after.balance_micro == alice.balance_micro + 5_000 - kept
    again = await live.call("POST", "/v1/adverts/lies", Ack, AdvertLieReport(codec.encode(advert), greedy))
    assert "before" in again.detail and (await store.account(node_account)).balance_micro == kept
    assert await audit(live.db) == []


async def test_a_lie_made_before_the_node_was_claimed_is_still_clawed_back(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: the clawback debited the node's earning account as it is now (its new
    volunteer's, empty), not the account the payment went into, and the lie could not be reported
    again."""
    from p2pfaas.ledger import earners

    monkeypatch.setattr(earners, "UNCLAIMED_RECHECK_S", 0.0)  # the claim is seen at once
    advert = await _greedy_advert(live)
    voucher = await funded_voucher(live)
    greedy = receipt("c" * 32, N2, voucher.voucher_id, b"x", price=5_000)
    assert (await live.receipts(N2, greedy)).paid == ("c" * 32,)
    accounts = AccountStore(live.db)
    bob = await accounts.create_user("bob", password_hash="x", role="volunteer", now=0.0)
    await accounts.bind_key(bob.user_id, N2.public.raw, kind="node", label="", now=0.0)
    ack = await live.call("POST", "/v1/adverts/lies", Ack, AdvertLieReport(codec.encode(advert), greedy))
    taken = int(ack.detail.split("; ")[1].split(" ")[0])
    assert taken > 4_900
    assert await audit(live.db) == []
