"""Replicated invocations against a real anchor and real nodes on 127.0.0.1, one of them dishonest.

The dishonest node is a real node whose executor rewrites every result before the node signs it
(result and receipt alike): what a volunteer who patched their node to skip work would send.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.anchor.accounts import AccountStore
from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.client.account import AccountClient
from p2pfaas.client.replication import ReplicatedInvoker, ReplicationInconclusive, _Answer
from p2pfaas.client.wallet import Wallet
from p2pfaas.db import open_database
from p2pfaas.db.schema import reputation
from p2pfaas.errors import LocalError
from p2pfaas.exec.base import ExecResult, FunctionSpec
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.ledger.audit import audit
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig
from p2pfaas.rpc import call
from p2pfaas.trust.adaptive import AdaptivePolicy, Record
from p2pfaas.trust.wire import NodeReputation
from tests.functions import write_function


class LyingExecutor(UnsandboxedProcessExecutor):
    """Runs the function, then swaps in a wrong answer (the node signs the lie)."""

    async def invoke(self, fn: FunctionSpec, payload: bytes, *, timeout_s: float) -> ExecResult:
        result = await super().invoke(fn, payload, timeout_s=timeout_s)
        return dataclasses.replace(result, output=b'{"sum": -1}')


def write_sum(root: Path, *, busy_loop: int = 0) -> Path:
    """A deterministic function; `busy_loop` iterations of CPU work make its metered price non-zero."""
    directory = root / "sum"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text(
        f"def handle(event):\n    sum(range({busy_loop}))\n    return {{'sum': sum(event)}}\n"
    )
    (directory / "p2pfaas.toml").write_text(
        'name = "sum"\nversion = "1.0.0"\nruntime = "python3.11"\nhandler = "main:handle"\n'
        "memory_mb = 64\ntimeout_s = 5\ndeterministic = true\n"
    )
    return directory


def seeded_key(directory: Path, seed: str) -> Path:
    """A node key from a fixed seed: node ids, and so the seeded choice of nodes, repeat run to run."""
    directory.mkdir(parents=True, exist_ok=True)
    KeyPair.from_seed(hashlib.sha256(seed.encode()).digest()).save(directory / "key")
    return directory / "key"


@dataclass
class Net:
    anchor: AnchorServer
    db_url: str
    honest: list[NodeDaemon]
    liars: list[NodeDaemon]
    client: AsyncClient

    async def reputation(self, node: NodeDaemon) -> NodeReputation:
        url = f"{self.anchor.url}/v1/reputation/{node.node_id}"
        return await call(self.client.session, "GET", url, NodeReputation, timeout_s=10)


async def network(tmp_path: Path, honest: int, liars: int) -> AsyncIterator[Net]:
    run_dir = Path(tempfile.mkdtemp(prefix="p2pr-", dir="/tmp"))
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    try:
        async with AsyncExitStack() as stack:
            anchor = await stack.enter_async_context(AnchorServer(db_url, port=0))
            nodes: list[NodeDaemon] = []
            for i in range(honest + liars):
                name = f"n{i}"
                config = NodeConfig(
                    unpaid_owners=True,  # among friends: owners run their own functions unpaid
                    anchor_url=anchor.url,
                    key_path=seeded_key(tmp_path / name, name),
                    work_dir=tmp_path / name,
                    port=0,
                )
                kind = LyingExecutor if i >= honest else UnsandboxedProcessExecutor
                node = await stack.enter_async_context(
                    NodeDaemon(config, executor=kind(work_dir=run_dir / name))
                )
                await node.announce()
                nodes.append(node)
            client = await stack.enter_async_context(
                AsyncClient(anchor.url, KeyPair.generate(), rng=random.Random(5))
            )
            await client.deploy(write_sum(tmp_path))
            yield Net(anchor, db_url, nodes[:honest], nodes[honest:], client)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
async def three_honest(tmp_path: Path) -> AsyncIterator[Net]:
    async for net in network(tmp_path, honest=3, liars=0):
        yield net


@pytest.fixture
async def one_liar(tmp_path: Path) -> AsyncIterator[Net]:
    async for net in network(tmp_path, honest=3, liars=1):
        yield net


async def test_honest_replicas_agree_and_the_anchor_records_it(three_honest: Net) -> None:
    net = three_honest
    invoker = ReplicatedInvoker(net.client, quorum=2, max_replicas=3, adaptive=False)
    done = await invoker.invoke("sum", [1, 2, 3])
    assert done.outcome.value == {"sum": 6}
    assert done.replicas == 2 and len(done.agreeing) == 2 and done.dissenting == frozenset()
    assert done.spot_checked and done.verdict is not None and done.verdict.outcome == "agreed"
    for node in net.honest:
        rep = await net.reputation(node)
        assert rep.agreements == (1 if node.node_id in done.agreeing else 0) and rep.disagreements == 0


async def test_a_lying_node_is_outvoted_and_loses_reputation(one_liar: Net) -> None:
    net = one_liar
    liar = net.liars[0].node_id
    invoker = ReplicatedInvoker(net.client, quorum=2, max_replicas=4, adaptive=False)
    caught = 0
    for i in range(6):
        done = await invoker.invoke("sum", [i, i])
        assert done.outcome.value == {"sum": 2 * i}  # never the lie
        assert done.outcome.node_id != liar
        if liar in done.dissenting:
            caught += 1
            assert done.replicas == 3  # the disagreement cost exactly one more replica
            assert done.verdict is not None and done.verdict.dissenting == (liar,)
    assert caught >= 1  # the seeded choice of nodes put the liar in some first pairs
    rep = await net.reputation(net.liars[0])
    expected = Record()
    for _ in range(caught):
        expected = AdaptivePolicy().after_vote(
            expected, agreed=False
        )  # the anchor's rule, applied `caught` times
    assert (rep.agreements, rep.disagreements, rep.consecutive_valid) == (
        0,
        caught,
        expected.consecutive_valid,
    )
    assert rep.trust_probability == 0.0
    for node in net.honest:
        assert (await net.reputation(node)).disagreements == 0


async def test_without_a_majority_the_vote_is_inconclusive(tmp_path: Path) -> None:
    async for net in network(tmp_path, honest=1, liars=1):
        invoker = ReplicatedInvoker(net.client, quorum=2, max_replicas=2, adaptive=False)
        with pytest.raises(ReplicationInconclusive):
            await invoker.invoke("sum", [1])


async def test_trusted_nodes_run_alone_and_new_ones_are_always_checked(three_honest: Net) -> None:
    net = three_honest
    invoker = ReplicatedInvoker(net.client, quorum=2, max_replicas=3, adaptive=True)
    first = await invoker.invoke("sum", [1])
    assert first.spot_checked and first.replicas == 2  # no record yet: always replicated
    async with open_database(net.db_url) as db:

        async def trust_all(connection: AsyncConnection) -> None:
            await connection.execute(reputation.delete())
            for node in net.honest:
                await connection.execute(
                    reputation.insert().values(
                        node_id=node.node_id,
                        agreements=10_000,
                        disagreements=0,
                        consecutive_valid=10_000,
                        lies=0,
                        updated_at=0.0,
                    )
                )

        await db.run(trust_all, what="trust every node")
    fresh = ReplicatedInvoker(net.client, quorum=2, max_replicas=3, adaptive=True)  # no cached reputations
    runs = [await fresh.invoke("sum", [n]) for n in range(5)]
    assert [r.outcome.value for r in runs] == [{"sum": n} for n in range(5)]
    assert all(not r.spot_checked and r.replicas == 1 for r in runs)  # 1 - 1/10000 each


async def test_replication_needs_a_deterministic_function(three_honest: Net, tmp_path: Path) -> None:
    await three_honest.client.deploy(write_function(tmp_path / "fns", "echo"))
    with pytest.raises(LocalError, match="deterministic"):
        await ReplicatedInvoker(three_honest.client).invoke("echo", 1)
    with pytest.raises(LocalError):
        ReplicatedInvoker(three_honest.client, quorum=1, max_replicas=1)


async def test_fn_invoke_verify_from_the_command_line(
    three_honest: Net, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from p2pfaas.cli import main

    key_file = tmp_path / "lessee.key"
    three_honest.client.keys.save(key_file)
    argv = ["fn", "invoke", "sum", "[4, 5]", "--verify", "always", "--anchor", three_honest.anchor.url]
    code = await asyncio.to_thread(main, [*argv, "--key", str(key_file)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert '"sum": 9' in out and "# verified: 2 of 2 replicas agreed" in err


@dataclass
class PaidNet:
    nodes: list[NodeDaemon]
    volunteers: list[AccountClient]
    client: AsyncClient
    db_url: str

    async def earned(self) -> list[int]:
        """What each node's volunteer has earned, once every node's receipts have been answered."""
        for node in self.nodes:
            await node.payments.sender.flush()
            await node.payments.sender.drained()  # held replicas are answered once their vote is in
        return [sum(a.balance_micro for a in (await v.balances()).accounts) for v in self.volunteers]


@contextlib.asynccontextmanager
async def paid_network(
    tmp_path: Path, executors: list[type[UnsandboxedProcessExecutor]]
) -> AsyncIterator[PaidNet]:
    """Dear nodes (one per executor class), each claimed by a volunteer, and a lessee paying with a
    wallet for a deterministic function that uses tens of ms of CPU (so every call has a price)."""
    password = "a long enough password"
    run_dir = Path(tempfile.mkdtemp(prefix="p2pq-", dir="/tmp"))
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    settings = AnchorSettings(hasher=PasswordHasher(log2_n=10))
    async with open_database(db_url) as db:
        stored = await settings.hasher.hash(password)
        await AccountStore(db).create_user("root", password_hash=stored, role="operator", now=0.0)
    try:
        async with AsyncExitStack() as stack:
            anchor = await stack.enter_async_context(AnchorServer(db_url, port=0, settings=settings))
            operator = await stack.enter_async_context(AccountClient(anchor.url))
            await operator.login("root", password)
            nodes: list[NodeDaemon] = []
            volunteers: list[AccountClient] = []
            for i, kind in enumerate(executors):
                config = NodeConfig(
                    unpaid_owners=True,  # among friends: owners run their own functions unpaid
                    anchor_url=anchor.url,
                    key_path=seeded_key(tmp_path / f"n{i}", f"n{i}"),
                    work_dir=tmp_path / f"n{i}",
                    port=0,
                    price_per_cpu_s_micro=1_000_000,
                    price_per_gb_s_micro=1_000_000,
                )
                node = await stack.enter_async_context(
                    NodeDaemon(config, executor=kind(work_dir=run_dir / f"n{i}"))
                )
                await node.announce()
                await node.payments.ready()
                volunteer = await stack.enter_async_context(AccountClient(anchor.url))
                await volunteer.signup(f"vol{i}", password, role="volunteer")
                await volunteer.claim_key(node.keys, kind="node")
                nodes.append(node)
                volunteers.append(volunteer)
            alice = await stack.enter_async_context(AccountClient(anchor.url))
            await alice.signup("alice", password)
            keys = KeyPair.generate()
            await alice.claim_key(keys, kind="lessee")
            await operator.grant("alice", 50_000_000, ref="welcome")
            wallet = Wallet(
                keys, alice.voucher, budget_micro=20_000_000, ttl_s=600, rng=random.Random(3),
                max_price_per_cpu_s_micro=10**7, max_price_per_gb_s_micro=10**6,  # these nodes are dear
            )  # fmt: skip
            client = await stack.enter_async_context(
                AsyncClient(anchor.url, keys, rng=random.Random(5), wallet=wallet)
            )
            await client.deploy(write_sum(tmp_path, busy_loop=2_000_000))  # tens of ms of CPU: priced
            yield PaidNet(nodes, volunteers, client, db_url)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


async def test_paid_replication_pays_the_majority_and_never_the_liar(tmp_path: Path) -> None:
    """Vouchers, receipts and the vote together: volunteers who ran agreeing replicas are paid; the
    volunteer whose node lied is paid nothing for its outvoted replicas; the ledger stays balanced."""
    async with paid_network(tmp_path, [UnsandboxedProcessExecutor] * 3 + [LyingExecutor]) as net:
        invoker = ReplicatedInvoker(net.client, quorum=2, max_replicas=4, adaptive=False)
        liar = net.nodes[3].node_id
        caught = 0
        for i in range(6):
            done = await invoker.invoke("sum", [i, 1])
            assert done.outcome.value == {"sum": i + 1}
            caught += liar in done.dissenting
            assert done.verdict is not None and done.verdict.outcome == "agreed"
        assert caught >= 1
        earned = await net.earned()
        assert earned[3] == 0  # every replica the liar ran was outvoted
        assert all(e > 0 for e in earned[:3])  # every honest node agreed in some vote, and was paid
        async with open_database(net.db_url) as db:
            assert await audit(db) == []


async def test_an_inconclusive_vote_pays_every_replica_that_answered(tmp_path: Path) -> None:
    """Review of #18: with no majority the lessee signed for no replica, so the nodes that ran them
    (receipts, channel rounds) were never paid, though the lessee got every answer. Nobody was
    proven wrong, so the lessee, who chose the cap, pays for what it received (`trust.gate`)."""
    async with paid_network(tmp_path, [UnsandboxedProcessExecutor, LyingExecutor]) as net:
        invoker = ReplicatedInvoker(net.client, quorum=2, max_replicas=2, adaptive=False)
        with pytest.raises(ReplicationInconclusive):
            await invoker.invoke("sum", [1, 2])
        signed = net.client.signed_channels()
        assert {node for _, node in signed} == {n.node_id for n in net.nodes}
        assert all(total > 0 for _, total in signed.values())
        await net.client.channels_delivered()
        earned = await net.earned()
        assert all(e > 0 for e in earned)
        async with open_database(net.db_url) as db:
            assert await audit(db) == []


async def test_a_forwarded_replica_votes_as_the_node_that_ran_it(three_honest: Net) -> None:
    """An entry node's router may forward a replica: the answer is signed by the node that ran it,
    which must be a node the anchor lists, and the ballot is that node's."""
    from aiohttp import ClientSession, web

    from p2pfaas.messages import NodeInfo

    net = three_honest
    runner_node = net.honest[1]

    async def forward(request: web.Request) -> web.Response:
        async with (
            ClientSession() as session,
            session.post(f"{runner_node.url}/v1/invoke", data=await request.read()) as answer,
        ):
            return web.Response(
                body=await answer.read(), status=answer.status, content_type=answer.content_type
            )

    app = web.Application()
    app.router.add_post("/v1/invoke", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        entry_keys = KeyPair.generate()
        entry = NodeInfo(
            entry_keys.key_id, entry_keys.public.raw, f"http://127.0.0.1:{port}", ("python3.11",), 1.0, 64
        )
        invoker = ReplicatedInvoker(net.client, adaptive=False)
        digest = (await net.client.function("sum")).header.digest
        listed = {n.public_key: n for n in await net.client.nodes()}
        answer = await invoker._one(entry, "a" * 32 + "~r1", digest, b"[2, 3]", 5.0, listed)
        assert isinstance(answer, _Answer) and answer.ballot.node_id == runner_node.node_id
        assert answer.node.node_id == runner_node.node_id
        # Signed by a node the anchor does not list: no vote.
        assert await invoker._one(entry, "b" * 32 + "~r1", digest, b"[2, 3]", 5.0, {}) is None
    finally:
        await runner.cleanup()


async def test_an_answer_whose_receipt_vouches_for_another_result_has_no_vote(three_honest: Net) -> None:
    """A node that returns one output but signs a receipt for another (the one the anchor would pay)
    is not counted: the vote the lessee sees and the vote the anchor decides must be the same."""
    from aiohttp import ClientSession, web

    from p2pfaas import codec, signing
    from p2pfaas.messages import InvokeResult, NodeInfo

    net = three_honest
    node = net.honest[0]

    async def two_faced(request: web.Request) -> web.Response:
        async with (
            ClientSession() as session,
            session.post(f"{node.url}/v1/invoke", data=await request.read()) as r,
        ):
            honest = codec.decode_as(InvokeResult, await r.read())
        forged = signing.sign(
            dataclasses.replace(honest, output=b'{"sum": 0}', signer=b"", signature=b""), node.keys
        )
        return web.Response(body=codec.encode(forged), content_type="application/x-msgpack")

    app = web.Application()
    app.router.add_post("/v1/invoke", two_faced)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        liar = NodeInfo(
            node.node_id, node.keys.public.raw, f"http://127.0.0.1:{port}", ("python3.11",), 1.0, 64
        )
        invoker = ReplicatedInvoker(net.client, adaptive=False)
        digest = (await net.client.function("sum")).header.digest
        assert await invoker._one(liar, "c" * 32 + "~r1", digest, b"[2, 3]", 5.0, {}) is None
        honest = NodeInfo(node.node_id, node.keys.public.raw, node.url, ("python3.11",), 1.0, 64)
        assert await invoker._one(honest, "d" * 32 + "~r1", digest, b"[2, 3]", 5.0, {}) is not None
    finally:
        await runner.cleanup()


async def test_a_lessee_sending_replicas_different_inputs_cannot_frame_an_honest_node(
    three_honest: Net,
) -> None:
    """A malicious lessee sends one replica another payload, so that honest node's correct answer
    differs, and reports the vote. The receipts name the requests the nodes ran: the anchor refuses
    the report, and no node gains or loses reputation."""
    from p2pfaas import signing
    from p2pfaas.errors import Refused
    from p2pfaas.messages import NodeInfo, Receipt, request_sha256
    from p2pfaas.trust.wire import ReplicationReport, ReplicationVerdict

    net = three_honest
    invoker = ReplicatedInvoker(net.client, adaptive=False)
    digest = (await net.client.function("sum")).header.digest
    listed = {n.public_key: n for n in await net.client.nodes()}
    group = "e" * 32
    receipts: list[Receipt] = []
    for k, (node, payload) in enumerate(zip(net.honest, (b"[1, 2]", b"[1, 2]", b"[1, 5]"), strict=True), 1):
        info = NodeInfo(node.node_id, node.keys.public.raw, node.url, ("python3.11",), 1.0, 64)
        answer = await invoker._one(info, f"{group}~r{k}", digest, payload, 5.0, listed)
        assert isinstance(answer, _Answer) and answer.result.receipt is not None
        assert answer.result.receipt.request_sha256 == request_sha256(answer.request)
        receipts.append(answer.result.receipt)
    assert receipts[0].result_sha256 == receipts[1].result_sha256 != receipts[2].result_sha256
    report = signing.sign(
        ReplicationReport(group, 2, tuple(receipts), signer=b"", signature=b""), net.client.keys
    )
    with pytest.raises(Refused, match="different requests") as refused:
        await call(
            net.client.session,
            "POST",
            f"{net.anchor.url}/v1/replication",
            ReplicationVerdict,
            report,
            timeout_s=10,
        )
    assert refused.value.status == 400
    for node in net.honest:
        rep = await net.reputation(node)
        assert (rep.agreements, rep.disagreements) == (0, 0)
    # The two replicas that did run one request still make a vote.
    fair = signing.sign(
        ReplicationReport(group, 2, tuple(receipts[:2]), signer=b"", signature=b""), net.client.keys
    )
    verdict = await call(
        net.client.session, "POST", f"{net.anchor.url}/v1/replication", ReplicationVerdict, fair, timeout_s=10
    )
    assert verdict.outcome == "agreed" and verdict.dissenting == ()
    assert (await net.reputation(net.honest[2])).disagreements == 0


async def test_a_replica_that_reached_no_node_costs_nothing_from_the_cap(three_honest: Net) -> None:
    """Issue #12: under faults a node may be unreachable before a byte is sent (connection refused, a
    relay with no tunnel, a failed identity pin). Nothing ran there, so the vote goes on elsewhere;
    before, such a replica counted against the cap and a quorum of 2 out of 2 ended inconclusive."""
    from p2pfaas.messages import NodeInfo

    net = three_honest
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = KeyPair.generate()
    dead = NodeInfo(gone.key_id, gone.public.raw, f"http://127.0.0.1:{port}", ("python3.11",), 1.0, 64)
    listed = [n for n in await net.client.nodes() if n.node_id != net.honest[2].node_id]
    invoker = ReplicatedInvoker(net.client, quorum=2, max_replicas=2, adaptive=False)
    digest = (await net.client.function("sum")).header.digest
    done = await invoker._replicate("c" * 32, digest, b"[4, 5]", 5.0, [dead, *listed], 64)
    assert done.outcome.value == {"sum": 9} and len(done.agreeing) == 2
    assert gone.key_id not in done.agreeing | done.dissenting
