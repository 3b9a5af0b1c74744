"""Gossip cores pumped in memory (no sockets): signed reports spread, age, and forgeries are refused."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import shutil
import tempfile
from pathlib import Path

import pytest

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.errors import SignatureError, Unreachable
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.gossip import Gossiper, LocalLoad
from p2pfaas.node.settings import NodeConfig
from p2pfaas.placement.view import LoadView
from p2pfaas.placement.wire import GossipExchange
from tests.functions import write_function

DIGEST = "d" * 64


def _gossiper(name: str, peers: dict[str, Gossiper], *, free: int = 1, fanout: int = 2) -> Gossiper:
    keys = KeyPair.from_seed(name.encode())
    load = LocalLoad(capacity=2, free_slots=free, queue_length=0, draining=False, warm={DIGEST: 1}, queued={})

    async def exchange(url: str, msg: GossipExchange) -> GossipExchange:
        peer = peers.get(url)
        if peer is None:
            raise Unreachable(f"{url} is down")
        peer.receive(msg)
        return peer.message()

    g = Gossiper(
        keys=keys,
        view=LoadView(self_id=keys.key_id, max_age_s=10.0),
        local_load=lambda: load,
        exchange=exchange,
        neighbours=lambda: list(peers),
        rng=random.Random(name),
        url=f"http://{name}",
        fanout=fanout,
    )
    peers[g.url] = g
    return g


async def test_push_pull_spreads_signed_reports_and_relays_them_onward() -> None:
    peers: dict[str, Gossiper] = {}
    a, b, c = (_gossiper(n, peers) for n in "abc")
    del peers[c.url]  # a knows only b
    await a.exchange_with(b.url)
    assert b.view.get(a.keys.key_id) is not None and a.view.get(b.keys.key_id) is not None
    peers[c.url] = c
    await c.exchange_with(b.url)  # c learns a through b's relay, signed by a
    learned = c.view.get(a.keys.key_id)
    assert learned is not None and learned.url == a.url and learned.warm == {DIGEST: 1}
    assert a.view.rtt(b.keys.key_id) >= 0.0


async def test_a_forged_sender_report_is_refused_and_a_forged_relay_skipped() -> None:
    peers: dict[str, Gossiper] = {}
    a, b = _gossiper("a", peers), _gossiper("b", peers)
    msg = a.message()
    forged = dataclasses.replace(msg, sender=dataclasses.replace(msg.sender, free_slots=2))
    with pytest.raises(SignatureError):
        b.receive(forged)
    assert b.view.get(a.keys.key_id) is None
    # A relayed report that a relayer altered is dropped; the honest sender's own report counts.
    c = _gossiper("c", peers)
    bad_relay = dataclasses.replace(a.own_report(), queue_length=99)
    b.receive(GossipExchange(sender=c.own_report(), relayed=(bad_relay,), relayed_age_ms=(0,)))
    assert b.view.get(c.keys.key_id) is not None and b.view.get(a.keys.key_id) is None


async def test_a_report_cannot_speak_for_another_node() -> None:
    peers: dict[str, Gossiper] = {}
    a, b = _gossiper("a", peers), _gossiper("b", peers)
    b.receive(a.message())
    held = b.view.get(a.keys.key_id)
    assert held is not None
    # The node id in the view is the hash of the signer's key; there is no id field to lie in.
    assert held.node_id == a.keys.key_id


async def test_a_round_talks_to_fanout_neighbours_and_forgets_one_that_is_gone() -> None:
    peers: dict[str, Gossiper] = {}
    nodes = [_gossiper(f"n{i}", peers, fanout=2) for i in range(6)]
    first = nodes[0]
    await first.round()
    assert first.exchanges == 2
    await first.announce()
    assert len(first.view) == 5
    gone = nodes[3]
    del peers[gone.url]
    first.neighbours = lambda: [gone.url]
    await first.round()
    assert first.failures == 1 and first.view.get(gone.keys.key_id) is None


async def test_sequence_numbers_only_grow_so_a_replayed_report_is_ignored() -> None:
    peers: dict[str, Gossiper] = {}
    a, b = _gossiper("a", peers), _gossiper("b", peers)
    old = a.message()
    new = a.message()
    assert new.sender.seq > old.sender.seq
    b.receive(new)
    b.receive(old)  # a replay of an older report
    held = b.view.get(a.keys.key_id)
    assert held is not None and held.seq == new.sender.seq


async def test_a_busy_neighbours_queued_function_is_prewarmed_here_and_released_when_it_cools(
    tmp_path: Path,
) -> None:
    """Two real nodes on loopback with the process executor: A (one slot, runs everything itself)
    builds a queue; B learns it by gossip and boots an instance of that function; when A's queue is
    gone for `cool_after_s`, B lets it go."""
    run_dir = Path(tempfile.mkdtemp(prefix="p2pg-", dir="/tmp"))
    try:
        async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}", port=0) as anchor:
            daemons = []
            async with contextlib.AsyncExitStack() as stack:
                for name, policy in (("a", "local-only"), ("b", "ours")):
                    config = NodeConfig(
                        unpaid_owners=True,  # among friends: owners run their own functions unpaid
                        anchor_url=anchor.url,
                        key_path=tmp_path / name / "node.key",
                        work_dir=tmp_path / name,
                        executor="process",
                        allow_unsandboxed=True,
                        slots=1,
                        placement=policy,
                        gossip_period_s=0.2,
                    )
                    executor = UnsandboxedProcessExecutor(work_dir=run_dir / name)
                    daemons.append(await stack.enter_async_context(NodeDaemon(config, executor=executor)))
                a, b = daemons
                for node in daemons:
                    await node.announce()
                    await node.placement.refresh_neighbours()
                b.placement.planner.cool_after_s = 1.0
                client = await stack.enter_async_context(AsyncClient(anchor.url, KeyPair.generate()))
                info = await client.deploy(write_function(tmp_path, "sleepy", timeout_s=20.0))
                burst = [
                    asyncio.ensure_future(client.invoke("sleepy", {"s": 1.0}, node_url=a.url))
                    for _ in range(4)
                ]
                warm_b = b.executor.warm_digests  # type: ignore[attr-defined]
                for _ in range(100):  # B boots an instance of A's queued function within a few rounds
                    if warm_b().get(info.header.digest, 0) > 0:
                        break
                    await asyncio.sleep(0.1)
                assert warm_b().get(info.header.digest, 0) > 0 and b.placement.prewarms >= 1
                assert [o.value for o in await asyncio.gather(*burst)] == ["woke"] * 4
                for _ in range(100):  # A's queue is gone: after cool_after_s B releases the instance
                    if warm_b().get(info.header.digest, 0) == 0:
                        break
                    await asyncio.sleep(0.1)
                assert warm_b().get(info.header.digest, 0) == 0
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
