"""A paying network on the simulator: an anchor, 10 nodes, a lessee with a wallet, volunteers paid.

Real anchor (SQLite ledger), node and client code runs on the virtual clock and the in-memory
network; only the executor is a model (of run time and metered usage, so receipts carry prices).
Two of the nodes crash part-way; the client retries their work elsewhere under the same ids.
Afterwards every receipt that reached the anchor was paid once, the books balance, and what the
lessee's holds paid is exactly what the volunteers earned plus the anchor's fee.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas import sim
from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.client import AsyncClient
from p2pfaas.client.account import AccountClient
from p2pfaas.client.wallet import Wallet
from p2pfaas.db import open_database
from p2pfaas.db.schema import accounts, settlements
from p2pfaas.errors import P2PFaaSError
from p2pfaas.exec.model_exec import ModelExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.audit import audit
from p2pfaas.ledger.postings import FEES_ACCOUNT
from p2pfaas.sim import testbed
from tests.functions import write_function

NODES = 10
INVOCATIONS = 200
PASSWORD = "a long enough password"


async def _network(
    net: sim.InMemoryNetwork,
    root: Path,
    seed: int,
    *,
    nodes_n: int = NODES,
    invocations: int = INVOCATIONS,
    crash: bool = True,
    slots: int = 4,
    forwarded: list[int] | None = None,
) -> tuple[dict[str, str], set[str]]:
    """Run the scenario; return (invocation id -> node that answered, the crashed nodes' ids).
    `forwarded` gets the number of forwards the nodes' routers made."""
    from p2pfaas.node.daemon import NodeDaemon

    settings = AnchorSettings(hasher=PasswordHasher(log2_n=10))
    async with contextlib.AsyncExitStack() as stack:
        anchor = await testbed.add_anchor(net, stack, root, settings=settings)
        nodes: list[NodeDaemon] = []
        for i in range(nodes_n):
            executor = ModelExecutor(rng=random.Random(f"{seed}/executor/{i}"), slots=2)
            node = await testbed.add_node(
                net, stack, anchor.url, root, i, seed=seed, executor=executor, price_per_cpu_s_micro=100_000,
                slots=slots,
            )  # fmt: skip
            nodes.append(node)
            with net.on_host(node.config.host):
                await node.payments.ready()
        client_ip = net.add_host(testbed.CLIENT_IP)
        with net.on_host(client_ip):
            lessee = KeyPair.from_seed(f"{seed}/lessee".encode())
            account = await stack.enter_async_context(AccountClient(anchor.url))
            await account.signup("alice", PASSWORD, role="lessee")
            await account.claim_key(lessee, kind="lessee")
        async with open_database(f"sqlite+aiosqlite:///{root / 'anchor.db'}") as db:  # the operator's grant
            from p2pfaas.ledger.store import LedgerStore

            alice_account = (await account.balances()).accounts[0].account_id
            await LedgerStore(db).grant(ref="sim", account_id=alice_account, amount_micro=10**9, now=0.0)
        with net.on_host(client_ip):
            wallet = Wallet(
                lessee, account.voucher, budget_micro=50_000_000, ttl_s=3600, rng=random.Random(seed),
                max_price_per_cpu_s_micro=10**6,  # over these nodes' price (100,000 per CPU-second)
            )  # fmt: skip
            client = await stack.enter_async_context(AsyncClient(anchor.url, lessee, rng=random.Random(seed)))
            client.wallet = wallet  # as the CLI and the devnet do: set after entry, still signs channels
            await client.deploy(write_function(root, "echo", timeout_s=30.0))
            for node in nodes:
                with net.on_host(node.config.host):
                    await node.announce()
            gate = asyncio.Semaphore(20)
            answered: dict[str, str] = {}

            async def one(i: int) -> None:
                async with gate:
                    if crash and i == invocations // 3:
                        net.crash(nodes[0].config.host)
                        net.crash(nodes[1].config.host)
                    try:
                        outcome = await client.invoke("echo", {"i": i})
                    except P2PFaaSError:
                        return  # a crashed node's answer was lost; the ledger is what matters here
                    if outcome.price_micro > 0:  # a call metered at nothing is free: never settled
                        answered[outcome.invocation_id] = outcome.node_id

            await asyncio.gather(*(one(i) for i in range(invocations)))
        if forwarded is not None:
            forwarded.append(sum(node.placement.router.stats.forwarded for node in nodes))
        for node in nodes[2 if crash else 0 :]:  # the live nodes' receipts reach the anchor
            with net.on_host(node.config.host):
                await node.payments.sender.flush()
                await node.payments.sender.drained()
        return answered, {nodes[0].node_id, nodes[1].node_id} if crash else set()


def test_a_paying_network_settles_every_receipt_once(tmp_path: Path) -> None:
    root = tmp_path / "net"
    root.mkdir()
    answered, crashed = sim.run(lambda net: _network(net, root, seed=5), seed=5)
    assert len(answered) > INVOCATIONS * 0.8
    _check_paid(root, answered, crashed)


def test_forwarded_paid_calls_are_paid_to_the_node_that_ran_them(tmp_path: Path) -> None:
    """Issue #14, hole 2: each ticket names the entry node; one-slot nodes under load forward, each
    forward carries the entry node's signed delegation, and the anchor pays the executor."""
    root = tmp_path / "net"
    root.mkdir()
    forwarded: list[int] = []
    answered, crashed = sim.run(
        lambda net: _network(
            net, root, seed=7, nodes_n=3, invocations=60, crash=False, slots=1, forwarded=forwarded
        ),
        seed=7,
    )
    assert len(answered) > 50 and forwarded[0] > 0
    _check_paid(root, answered, crashed)


def _check_paid(root: Path, answered: dict[str, str], crashed: set[str]) -> None:
    async def check() -> None:
        async with open_database(f"sqlite+aiosqlite:///{root / 'anchor.db'}") as db:
            assert await audit(db) == []

            async def read(connection: AsyncConnection) -> tuple[dict[str, str], int, int, int]:
                rows = await connection.execute(sa.select(settlements.c.invocation_id, settlements.c.node_id))
                ids = {str(i): str(n) for i, n in rows}
                prices = int(await connection.scalar(sa.select(sa.func.sum(settlements.c.price_micro))) or 0)
                fees = int(
                    await connection.scalar(
                        sa.select(accounts.c.balance_micro).where(accounts.c.name == FEES_ACCOUNT)
                    )
                    or 0
                )
                earned = int(
                    await connection.scalar(
                        sa.select(sa.func.sum(accounts.c.balance_micro)).where(accounts.c.kind == "node")
                    )
                    or 0
                )
                return ids, prices, fees, earned

            ids, prices, fees, earned = await db.run(read, what="read", write=False)
            assert prices == earned > 0 and fees > 0
            # Every answer the client got from a live node was paid, to that node; what else was paid
            # ran on a node that crashed before its answer got out (the retry ran elsewhere too).
            live = {i: n for i, n in answered.items() if n not in crashed}
            assert {i: ids.get(i) for i in live} == live
            assert all(n in crashed or answered.get(i) == n for i, n in ids.items())

    asyncio.run(check())
