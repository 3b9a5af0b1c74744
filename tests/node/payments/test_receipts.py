"""The node's receipt sender against a real anchor (ledger routes on SQLite, HTTP on 127.0.0.1).

The queue core is tested alone (batching, linger, backoff); the sender end to end: batches
arrive and are paid once, an unreachable anchor costs nothing but time, and receipts survive a
restart in the journal.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from p2pfaas import signing
from p2pfaas.anchor import ledger_api
from p2pfaas.channels import sign_channel
from p2pfaas.db import Database, open_database
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind, FeePolicy
from p2pfaas.ledger.store import LedgerStore
from p2pfaas.messages import Receipt, Voucher
from p2pfaas.node.payments.receipts import ReceiptJournal, ReceiptQueue, ReceiptSender
from p2pfaas.rpc import error_middleware
from p2pfaas.tickets import sign_ticket
from tests.ports import free_port

T0 = 1_700_000_000.0
DIGEST = "ef" * 32


def keys(seed: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(seed.encode()).digest())


NODE, LESSEE, ANCHOR = keys("node"), keys("lessee"), keys("anchor")


def receipt(n: int, price: int = 10) -> Receipt:
    ran = hashlib.sha256(f"request {n}".encode()).digest()
    unsigned = Receipt(
        f"inv-{n}", DIGEST, LESSEE.public.raw, "v1", True, 1, 1, 1, price, b"h", T0, b"", b"",
        request_sha256=ran,
        ticket=sign_ticket(f"inv-{n}", "v1", ran, LESSEE, payee=NODE.key_id, max_price_micro=price),
    )  # fmt: skip
    return signing.sign(unsigned, NODE)


def test_queue_batches_lingers_and_backs_off() -> None:
    q = ReceiptQueue(random.Random(1), max_batch=3, linger_s=1.0, base_backoff_s=1.0, max_backoff_s=4.0)
    assert q.next_batch(0.0) is None and q.send_at() is None
    q.add(receipt(0), 0.0)
    q.add(receipt(0), 0.0)  # the same invocation twice is one receipt
    assert q.send_at() == 1.0 and q.next_batch(0.5) is None
    assert q.next_batch(0.5, flush=True) is not None  # flush ignores the linger
    q.acknowledged([], 0.5)
    for n in (1, 2):
        q.add(receipt(n), 0.6)
    batch = q.next_batch(0.6)  # full: at once
    assert batch is not None and [r.invocation_id for r in batch] == ["inv-0", "inv-1", "inv-2"]
    assert q.next_batch(0.6) is None  # one batch in flight at a time
    pauses = [q.failed(1.0)]
    assert 0.5 <= pauses[0] <= 1.0 and q.next_batch(1.0) is None
    for k in range(1, 6):
        assert q.next_batch(100.0 * k) is not None
        pauses.append(q.failed(100.0 * k))
    assert max(pauses) <= 4.0 and pauses[-1] >= 2.0  # capped exponential with jitter
    q.next_batch(1000.0)
    q.acknowledged(["inv-0", "inv-1"], 1000.0)
    assert list(q.pending) == ["inv-2"]


def test_journal_survives_a_torn_tail(tmp_path: Path) -> None:
    journal = ReceiptJournal(tmp_path / "state" / "receipts.journal")
    assert journal.load() == []
    journal.append(receipt(1))
    journal.append(receipt(2))
    with journal.path.open("ab") as file:
        file.write(b"\x00\x00\x01\x00partial")  # a crash mid-append
    assert [r.invocation_id for r in journal.load()] == ["inv-1", "inv-2"]
    journal.rewrite([receipt(3)])
    assert [r.invocation_id for r in journal.load()] == ["inv-3"]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}") as database:
        store = LedgerStore(database)
        account = await store.user_account(1, AccountKind.LESSEE, now=T0)
        await store.grant(ref="g", account_id=account, amount_micro=10**6, now=T0)
        v = signing.sign(Voucher("v1", LESSEE.public.raw, 10**6, T0 + 10**6, b"", b""), ANCHOR)
        await store.open_voucher(v, lessee_account_id=account, owner_user_id=1, now=T0)
        yield database


async def serve_anchor(db: Database, port: int) -> web.AppRunner:
    app = web.Application(middlewares=[error_middleware])
    ledger_api.setup(app, db, fees=FeePolicy(fee_ppm=0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def node_earnings(db: Database) -> int:
    store = LedgerStore(db)
    return (
        await store.account(await store.open_account(f"node:{NODE.key_id}", AccountKind.NODE, now=T0))
    ).balance_micro


async def test_sender_delivers_through_an_outage_and_a_restart(db: Database, tmp_path: Path) -> None:
    port = free_port()
    journal = tmp_path / "node" / "receipts.journal"
    async with aiohttp.ClientSession() as session:

        def sender() -> ReceiptSender:
            return ReceiptSender(
                anchor_url=f"http://127.0.0.1:{port}",
                keys=NODE,
                session=session,
                journal_path=journal,
                rng=random.Random(2),
                linger_s=0.01,
                max_batch=4,
                timeout_s=5.0,
                flush_timeout_s=1.0,
                # the lessee received every result: 14 calls at 10
                channel_tickets=lambda ids: [
                    sign_channel("v1", NODE.key_id, seq=1, total_micro=140, keys=LESSEE)
                ],
            )

        # The anchor is down: receipts wait on disk, the node carries on.
        async with sender() as s:
            for n in range(10):
                s.submit(receipt(n))
            await asyncio.sleep(0.1)
            assert len(s.queue.pending) == 10
        assert len(ReceiptJournal(journal).load()) == 10

        runner = await serve_anchor(db, port)
        try:
            async with sender() as s:  # a restarted node resends its journal, plus new receipts
                for n in range(10, 14):
                    s.submit(receipt(n))
                    s.submit(receipt(n - 10))  # resent: harmless
                await asyncio.wait_for(s.drained(), timeout=60)
                assert s.sent_batches >= 14 // 4
            assert ReceiptJournal(journal).load() == []
            assert await node_earnings(db) == 14 * 10
            async with sender() as s:  # the same receipts again, long after: nothing more is paid
                for n in range(14):
                    s.submit(receipt(n))
                await s.flush()
                await s.flush()
                assert not s.queue.pending
            assert await node_earnings(db) == 14 * 10
            assert await audit(db) == []
        finally:
            await runner.cleanup()
