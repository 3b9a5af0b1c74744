"""Stress on a real MariaDB: 32 concurrent workers settle thousands of receipts, each resent 0-3 times
(some by a second node), while payouts drain the nodes' accounts and a killer task kills the
workers' database connections mid-transaction. Afterwards the books balance, no invocation was
paid twice or beyond its voucher, and nothing was lost: every receipt a voucher could cover is paid.

Lock waits are cut to 1 s on every connection, so lock-wait timeouts happen and are rolled back and
retried like deadlocks. Small enough for the unit suite; bench/bench_settle.py has the big runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from p2pfaas.db import Database, RetryPolicy, open_database
from p2pfaas.db.schema import settlements
from p2pfaas.db.testing import exclusive_mysql_database
from p2pfaas.errors import StorageError
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.policy import AccountKind, FeePolicy, PayoutState, ReceiptClaim
from p2pfaas.ledger.postings import InsufficientFunds
from p2pfaas.ledger.settlement import Settler, claim_of, node_account_name
from p2pfaas.ledger.store import LedgerStore
from tests.conftest import mysql_url_or_skip
from tests.ledger.conftest import T0, keys, receipt, voucher

pytestmark = pytest.mark.mysql

WORKERS = 32
RECEIPTS = 2400
NODES = [keys(f"stress node {k}") for k in range(8)]
LESSEE, ANCHOR = keys("stress lessee"), keys("stress anchor")
FEES = FeePolicy(fee_ppm=50_000)
SEED = 20261123


@pytest.fixture
async def db() -> AsyncIterator[tuple[Database, str]]:
    url = mysql_url_or_skip()
    retry = RetryPolicy(attempts=40, base_delay_s=0.002, max_delay_s=0.2)
    async with exclusive_mysql_database(url), open_database(url, retry=retry) as database:
        yield database, url


async def test_32_workers_with_resends_and_killed_connections(
    db: tuple[Database, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="p2pfaas.db.retry")
    database, url = db
    rng = random.Random(SEED)
    store = LedgerStore(database)
    account = await store.user_account(1, AccountKind.LESSEE, now=T0)
    await store.grant(ref="stress", account_id=account, amount_micro=10**10, now=T0)
    budgets: dict[str, int] = {}
    for v in range(16):
        budgets[f"v{v}"] = 10**8 if v < 12 else 20_000  # the last four cover about half their receipts
        await store.open_voucher(
            voucher(f"v{v}", LESSEE, budgets[f"v{v}"], expires_at=T0 + 10**6, anchor=ANCHOR),
            lessee_account_id=account,
            owner_user_id=1,
            now=T0,
        )

    # Every receipt once by its node, plus 0-3 resends, a tenth of them by a second node.
    deliveries: dict[int, list[ReceiptClaim]] = defaultdict(list)
    truth: dict[str, tuple[str, int]] = {}  # invocation id -> (voucher, price)
    for n in range(RECEIPTS):
        invocation_id, voucher_id, price = f"inv-{n}", f"v{n % 16}", rng.randrange(100, 500)
        truth[invocation_id] = (voucher_id, price)
        node = rng.randrange(len(NODES))
        for copy in range(1 + rng.randrange(4)):
            sender = (node + 1) % len(NODES) if copy and rng.random() < 0.1 else node
            signed = receipt(
                invocation_id, node=NODES[sender], lessee=LESSEE, voucher_id=voucher_id, price_micro=price
            )
            deliveries[sender].append(claim_of(signed))
    batches: asyncio.Queue[tuple[int, list[ReceiptClaim]]] = asyncio.Queue()
    for sender, claims in deliveries.items():
        rng.shuffle(claims)
        while claims:
            size = rng.randrange(1, 40)
            batches.put_nowait((sender, claims[:size]))
            claims = claims[size:]

    # Every connection the pool opens waits 1 s at most for a row lock, and is a kill candidate.
    connection_ids: list[int] = []

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
        cursor.execute("SELECT CONNECTION_ID()")
        connection_ids.append(int(cursor.fetchone()[0]))
        cursor.close()

    event.listen(database.engine.sync_engine, "connect", on_connect)
    await database.engine.dispose()  # reopen every pooled connection through the listener

    settler = Settler(database, fees=FEES)
    outcome: dict[str, set[str]] = defaultdict(set)  # invocation id -> nodes it was paid to
    resent_after_error = 0
    workers_done = asyncio.Event()

    async def worker() -> None:
        nonlocal resent_after_error
        while not batches.empty():
            sender, claims = batches.get_nowait()
            try:
                done = await settler.settle(NODES[sender].key_id, claims, now=T0 + 1)
            except StorageError:
                # As a node's sender would: the batch goes again later (settling is idempotent).
                resent_after_error += 1
                batches.put_nowait((sender, claims))
                continue
            for invocation_id in done.paid:
                outcome[invocation_id].add(NODES[sender].key_id)

    async def payouts() -> None:
        n = 0
        while not workers_done.is_set():
            node = rng.choice(NODES)
            node_account = await store.open_account(node_account_name(node.key_id), AccountKind.NODE, now=T0)
            n += 1
            with contextlib.suppress(InsufficientFunds):
                await store.request_payout(
                    payout_id=f"p{n}", account_id=node_account, amount_micro=500, destination="x", now=T0
                )
                state = PayoutState.PAID if n % 3 else PayoutState.FAILED
                await store.settle_payout(f"p{n}", state, now=T0)
            await asyncio.sleep(0.005)

    kills = 0
    killer_engine = create_async_engine(url)

    async def killer() -> None:
        nonlocal kills
        async with killer_engine.connect() as admin:
            while not workers_done.is_set():
                await asyncio.sleep(rng.uniform(0.01, 0.04))
                if connection_ids:
                    victim = rng.choice(connection_ids)
                    with contextlib.suppress(sa.exc.DBAPIError):  # it may be gone already
                        await admin.execute(sa.text("KILL CONNECTION :id"), {"id": victim})
                        kills += 1

    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(killer())
            tasks.create_task(payouts())
            async with asyncio.TaskGroup() as workers:
                for _ in range(WORKERS):
                    workers.create_task(worker())
            workers_done.set()
    finally:
        await killer_engine.dispose()

    assert kills > 0
    retried = [r.getMessage() for r in caplog.records if "transient database error" in r.getMessage()]
    assert retried  # killed connections and deadlocks did happen, and were retried
    assert await audit(database) == []
    assert all(len(nodes) == 1 for nodes in outcome.values())  # never paid twice, even to two nodes

    async def rows(connection: AsyncConnection) -> list[tuple[str, str, int]]:
        query = sa.select(settlements.c.invocation_id, settlements.c.voucher_id, settlements.c.price_micro)
        return [(str(r[0]), str(r[1]), int(r[2])) for r in (await connection.execute(query)).all()]

    settled = await database.run(rows, what="read settlements", write=False)
    assert len(settled) == len({row[0] for row in settled})
    # Connections killed during COMMIT may have landed a batch whose answer was lost: the resend
    # found it settled. So the database, not the answers, is the record of what was paid.
    assert {row[0] for row in settled} >= set(outcome)
    spent: dict[str, int] = defaultdict(int)
    for invocation_id, voucher_id, price in settled:
        assert truth[invocation_id] == (voucher_id, price)
        spent[voucher_id] += FEES.charge_micro(price)
    for voucher_id, budget in budgets.items():
        assert spent[voucher_id] <= budget
    unpaid = set(truth) - {row[0] for row in settled}
    assert {truth[i][0] for i in unpaid} <= {
        "v12",
        "v13",
        "v14",
        "v15",
    }  # nothing lost but what was over budget
    for voucher_id in ("v12", "v13", "v14", "v15"):
        cheapest_unpaid = min((truth[i][1] for i in unpaid if truth[i][0] == voucher_id), default=None)
        if cheapest_unpaid is not None:  # an unpaid receipt would indeed not have fitted
            assert spent[voucher_id] + FEES.charge_micro(cheapest_unpaid) > budget
