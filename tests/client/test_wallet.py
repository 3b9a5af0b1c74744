"""Paying for invocations end to end, on real loopback sockets: anchor (SQLite), node, lessee, volunteer.

The lessee's wallet buys a voucher with credits an operator granted, invocations carry it, the
node checks it offline and runs the work, its receipts reach the anchor in batches, and the
volunteer who claimed the node is paid, less nothing: the anchor's fee is on top, paid by the
lessee. Nodes run the unsandboxed process executor here (the flow, not the sandbox, is tested).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from p2pfaas import codec, signing, tickets
from p2pfaas.anchor.accounts import AccountStore
from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.cli import pay as pay_cli
from p2pfaas.client import AsyncClient
from p2pfaas.client.account import AccountClient
from p2pfaas.client.wallet import Wallet
from p2pfaas.db import open_database
from p2pfaas.db.schema import settlements
from p2pfaas.errors import Refused
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.audit import audit
from p2pfaas.messages import ErrorReply, InvokeRequest, InvokeResult, Voucher
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.payments.book import max_price_micro
from p2pfaas.node.settings import NodeConfig
from tests.functions import write_function

PASSWORD = "a long enough password"
T0 = 1_700_000_000.0


@dataclasses.dataclass
class Net:
    anchor: AnchorServer
    node: NodeDaemon
    root: Path
    db_url: str
    operator: AccountClient
    alice: AccountClient  # a lessee
    bob: AccountClient  # a volunteer; he claimed the node
    session: aiohttp.ClientSession


@pytest.fixture
def workers() -> int:
    return 1  # the node's worker processes; a test parametrizes it to run more


@pytest.fixture
async def net(tmp_path: Path, workers: int) -> AsyncIterator[Net]:
    # Unix socket paths are limited to 107 bytes: the node's directories are short.
    run_dir = Path(tempfile.mkdtemp(prefix="p2pw-", dir="/tmp"))
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
    settings = AnchorSettings(hasher=PasswordHasher(log2_n=10))
    async with open_database(db_url) as db:
        stored = await settings.hasher.hash(PASSWORD)
        await AccountStore(db).create_user("root", password_hash=stored, role="operator", now=T0)
    async with AnchorServer(db_url, port=0, settings=settings) as anchor:
        config = NodeConfig(
            unpaid_owners=True,  # among friends: owners run their own functions unpaid
            anchor_url=anchor.url,
            key_path=run_dir / "node" / "node.key",
            work_dir=run_dir / "node",
            executor="process",
            allow_unsandboxed=True,
            price_per_cpu_s_micro=50_000,
            price_per_gb_s_micro=10_000,
            workers=workers,
        )
        async with (
            NodeDaemon(config, executor=UnsandboxedProcessExecutor(work_dir=run_dir / "run")) as node,
            AccountClient(anchor.url) as operator,
            AccountClient(anchor.url) as alice,
            AccountClient(anchor.url) as bob,
            aiohttp.ClientSession() as session,
        ):
            await node.announce()
            await node.payments.ready()
            await operator.login("root", PASSWORD)
            await alice.signup("alice", PASSWORD, role="lessee")
            await bob.signup("bob", PASSWORD, role="volunteer")
            await bob.claim_key(node.keys, kind="node")
            yield Net(anchor, node, tmp_path, db_url, operator, alice, bob, session)
    shutil.rmtree(run_dir, ignore_errors=True)


def own_balance(balances: object) -> int:
    return int(balances.accounts[0].balance_micro)  # type: ignore[attr-defined]


async def test_a_wallet_pays_for_invocations_and_the_volunteer_is_paid(net: Net) -> None:
    keys = KeyPair.generate()
    await net.alice.claim_key(keys, kind="lessee")
    await net.operator.grant("alice", 5_000_000, ref="welcome")
    wallet = Wallet(
        keys, net.alice.voucher, budget_micro=1_000_000, ttl_s=600, rng=random.Random(3),
        max_price_per_cpu_s_micro=10**7, max_price_per_gb_s_micro=10**6,  # this node is dear
    )  # fmt: skip
    async with AsyncClient(net.anchor.url, keys, wallet=wallet) as client:
        await client.deploy(write_function(net.root, "sleepy"))
        for _ in range(5):  # 50 ms each: enough metered use to cost something at these prices
            assert (await client.invoke("sleepy", {"s": 0.05})).value == "woke"
    assert wallet.vouchers_bought == 1
    spent = wallet._spent_micro
    assert spent > 0  # the receipts came back with prices, and the wallet counted them

    await net.node.payments.sender.flush()
    await net.node.payments.sender.drained()
    earned = own_balance(await net.bob.balances())
    assert earned > 0
    assert own_balance(await net.alice.balances()) == 5_000_000 - 1_000_000  # the rest is held by the voucher
    async with open_database(net.db_url) as db:
        assert await audit(db) == []
    # The lessee paid the volunteer's price and the anchor's fee on top: what the wallet counted.
    held = [a for a in (await net.alice.balances()).accounts if a.kind == "hold"]
    assert [1_000_000 - h.balance_micro for h in held] == [spent]
    assert earned < spent


@pytest.mark.parametrize("workers", [2])
async def test_a_node_of_two_processes_is_paid_once_for_each_invocation_either_ran(net: Net) -> None:
    """Both processes check the voucher against one budget and send their own receipts."""
    keys = KeyPair.generate()
    await net.alice.claim_key(keys, kind="lessee")
    await net.operator.grant("alice", 50_000_000, ref="welcome")
    # Enough budget to reserve the worst case of all 16 at once (each may cost up to ~0.56 credit).
    wallet = Wallet(
        keys, net.alice.voucher, budget_micro=20_000_000, ttl_s=600, rng=random.Random(4),
        max_price_per_cpu_s_micro=10**7, max_price_per_gb_s_micro=10**6,  # this node is dear
    )  # fmt: skip
    async with AsyncClient(net.anchor.url, keys, wallet=wallet) as client:
        await client.deploy(write_function(net.root, "sleepy"))
        # Concurrent calls open several connections, which the kernel spreads over both processes.
        outcomes = await asyncio.gather(*(client.invoke("sleepy", {"s": 0.05}) for _ in range(16)))
    assert all(o.value == "woke" for o in outcomes) and wallet.vouchers_bought == 1
    assert net.node.workers is not None and net.node.workers.tables.loads.row(1).invocations > 0
    await net.node.payments.sender.flush()
    async with open_database(net.db_url) as db:
        count = sa.select(sa.func.count()).select_from(settlements)
        for _ in range(300):  # the worker's receipt sender batches for about a second
            paid = await db.run(lambda c: c.scalar(count), what="count", write=False)
            if paid == 16:
                break
            await asyncio.sleep(0.1)
        assert paid == 16
        assert await audit(db) == []
    assert own_balance(await net.bob.balances()) > 0


async def test_vouchers_let_a_lessee_run_anothers_function_and_forgeries_are_refused(net: Net) -> None:
    owner, lessee = KeyPair.generate(), KeyPair.generate()
    async with AsyncClient(net.anchor.url, owner) as client:
        info = await client.deploy(write_function(net.root, "echo"))
    await net.alice.claim_key(lessee, kind="lessee")
    await net.operator.grant("alice", 2_000_000, ref="g")
    voucher = await net.alice.voucher(lessee, budget_micro=1_000_000, ttl_s=600, request_id="r1")

    async def invoke(v: Voucher | None, invocation_id: str) -> tuple[int, bytes]:
        request = InvokeRequest(invocation_id, info.header.digest, b"7", 5.0, v, signer=b"", signature=b"")
        # the ticket pays this node, at most what the voucher holds
        paid = tickets.signed_request(request, lessee, payee=net.node.node_id, max_price_micro=1_000_000)
        body = codec.encode(paid)
        async with net.session.post(f"{net.node.url}/v1/invoke", data=body) as response:
            return response.status, await response.read()

    status, body = await invoke(voucher, "paid-1")
    assert status == 200
    result = codec.decode_as(InvokeResult, body)
    assert result.ok and result.receipt is not None and result.receipt.voucher_id == voucher.voucher_id

    status, body = await invoke(None, "unpaid")
    assert status == 403  # not the owner, no voucher
    unticketed = InvokeRequest("no-ticket", info.header.digest, b"7", 5.0, voucher, signer=b"", signature=b"")
    async with net.session.post(
        f"{net.node.url}/v1/invoke", data=codec.encode(signing.sign(unticketed, lessee))
    ) as response:  # the anchor would never pay for it: the node does not run it
        assert response.status == 403
        assert "spend ticket" in codec.decode_as(ErrorReply, await response.read()).reason
    forged = signing.sign(dataclasses.replace(voucher, budget_micro=10**12), KeyPair.generate())
    status, body = await invoke(forged, "forged")
    assert status == 403 and "anchor" in codec.decode_as(ErrorReply, body).reason
    with pytest.raises(Refused):  # alice cannot have a voucher for a key that is not hers
        await net.alice.voucher(owner, budget_micro=1, ttl_s=600, request_id="r2")


async def test_a_voucher_a_node_calls_spent_is_renewed_and_the_same_invocation_runs(net: Net) -> None:
    """The wallet cannot know a node's worst-case reservation: when the node answers 402 (it ran
    nothing), the client renews the voucher once and sends the same invocation id again."""
    keys = KeyPair.generate()
    await net.alice.claim_key(keys, kind="lessee")
    await net.operator.grant("alice", 50_000_000, ref="welcome")
    payments = net.node.payments
    assert payments.book is not None
    # The node reserves an invocation's worst case before running it: this budget covers one, not two.
    worst = payments.book.fees.charge_micro(
        max_price_micro(payments.prices, timeout_s=5.0, memory_mb=64, cpus=payments.cpus)
    )
    wallet = Wallet(
        keys,
        net.alice.voucher,
        budget_micro=worst * 3 // 2,
        ttl_s=600,
        rng=random.Random(5),
        # ceilings over this node's (dear) prices: its worst case, not the lessee's cap, is reserved
        max_price_per_cpu_s_micro=100_000,
        max_price_per_gb_s_micro=20_000,
    )
    async with AsyncClient(net.anchor.url, keys, wallet=wallet) as client:
        await client.deploy(write_function(net.root, "sleepy"))
        # Side by side: while one runs, its worst case is reserved, and the other does not fit.
        outcomes = await asyncio.gather(
            *(client.invoke("sleepy", {"s": 0.3}, timeout_s=5.0) for _ in range(2))
        )
    assert [o.value for o in outcomes] == ["woke", "woke"]
    assert wallet.vouchers_bought == 2  # one 402, one renewal
    assert net.node.service.stats.invocations == 2  # each ran once; the refused attempt ran nothing


async def test_the_wallet_renews_before_its_voucher_expires_or_runs_out(net: Net) -> None:
    keys = KeyPair.generate()
    await net.alice.claim_key(keys, kind="lessee")
    await net.operator.grant("alice", 10_000, ref="g")
    now = [T0]
    wallet = Wallet(
        keys, net.alice.voucher, budget_micro=1_000, ttl_s=600, rng=random.Random(4), clock=lambda: now[0]
    )
    first = await wallet.voucher(lifetime_s=15)
    assert await wallet.voucher(lifetime_s=15) == first  # no new voucher while this one serves
    now[0] = first.expires_at - 40
    assert await wallet.voucher(lifetime_s=15) == first
    now[0] = first.expires_at - 20  # within 5 % of its life of the end (an invocation of 15 s still fits)
    second = await wallet.voucher(lifetime_s=15)
    assert second.voucher_id != first.voucher_id and wallet.vouchers_bought == 2
    wallet.exhausted()  # a node said 402: spent on that node
    third = await wallet.voucher()
    assert third.voucher_id not in (first.voucher_id, second.voucher_id)
    assert own_balance(await net.alice.balances()) == 10_000 - 3_000
    with pytest.raises(Refused):  # no credits left for a fourth: the anchor refuses, the wallet says so
        for _ in range(10):
            wallet.exhausted()
            await wallet.voucher()


async def test_the_cli_pays_and_reuses_its_voucher_across_runs(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`p2pfaas fn invoke NAME --pay 1`, twice: one voucher, kept between the two processes' runs."""
    keys = KeyPair.generate()
    await net.alice.claim_key(keys, kind="lessee")
    await net.operator.grant("alice", 5_000_000, ref="g")
    assert net.alice.token is not None
    monkeypatch.setenv("P2PFAAS_TOKEN", net.alice.token)
    monkeypatch.setenv("P2PFAAS_HOME", str(tmp_path / "home"))
    async with AsyncClient(net.anchor.url, keys) as client:
        await client.deploy(write_function(net.root, "sleepy"))
    args = argparse.Namespace(pay="1", max_price=100_000)  # --max-price over this dear node's prices
    bought = []
    for _ in range(2):  # two separate commands, each with its own client
        async with AsyncClient(net.anchor.url, keys) as client, pay_cli.paying(args, client):
            assert (await client.invoke("sleepy", {"s": 0.05})).value == "woke"
            assert client.wallet is not None
            bought.append(client.wallet.vouchers_bought)
    assert bought == [1, 0]  # the second run found the first one's voucher
    state = tmp_path / "home" / f"voucher-{keys.key_id[:16]}.json"
    assert state.stat().st_mode & 0o777 == 0o600
    assert own_balance(await net.alice.balances()) == 5_000_000 - 1_000_000  # one voucher of 1 credit held
