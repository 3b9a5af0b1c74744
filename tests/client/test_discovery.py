"""Discovery over real UDP on 127.0.0.1: an anchor with its bootstrap DHT node, three nodes, a client."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import tempfile
from pathlib import Path

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.client.discovery import Discovery
from p2pfaas.clock import wall_time
from p2pfaas.dht import adverts
from p2pfaas.dht.wire import Capacity
from p2pfaas.identity import KeyPair
from tests.client.clientkit import dht_network, node_daemon
from tests.functions import write_function


async def _wait_for_adverts(discovery: Discovery, count: int) -> None:
    async with asyncio.timeout(60):  # a hang guard, not a speed assertion
        while len(await discovery.find_nearby("python3.11", count=10)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # adverts arrive over the network: nothing local to wait on


async def test_the_client_finds_its_entry_nodes_through_the_dht(tmp_path: Path) -> None:
    async with dht_network(tmp_path, ("a", "b", "c")) as (anchor, nodes):
        assert anchor.dht is not None
        seeds = (anchor.dht.address,)
        async with Discovery(seeds, rng=random.Random(1)) as probe:
            await _wait_for_adverts(probe, 3)
            found = await probe.find_nearby("python3.11", count=10)
        assert {a.url for a in found} == {n.url for n in nodes}
        config = nodes[0].config  # adverts carry the prices the node charges in its receipts
        assert {(a.capacity.price_per_cpu_s, a.capacity.price_per_gb_s) for a in found} == {
            (config.price_per_cpu_s_micro, config.price_per_gb_s_micro)
        }
        assert config.price_per_cpu_s_micro > 0

        async with AsyncClient(
            anchor.url, KeyPair.generate(), rng=random.Random(2), dht_seeds=seeds
        ) as client:
            await client.deploy(write_function(tmp_path, "echo"))
            for i in range(3):
                outcome = await client.invoke("echo", i)
                assert outcome.value == {"echo": i}
                assert outcome.node_id in {n.node_id for n in nodes}
            assert client._nodes_fetched_at == float("-inf")  # the anchor's node list was never asked
            # The nodes that ran it cached the bundle and announced themselves as its providers.
            digest = (await client.function("echo")).header.digest
            ran = {n.url for n in nodes if n.service.stats.invocations}
            asker = nodes[0].overlay
            assert asker is not None and nodes[0].service.bundles.find_providers is not None
            # an evicted bundle is withdrawn from the DHT
            assert nodes[0].service.bundles.on_bundle_evicted == asker.withdraw_provider
            async with asyncio.timeout(60):
                while set(await asker.providers(digest)) | {nodes[0].url} < ran:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)

        # The anchor's bootstrap node goes away: the nodes still know each other, and a client that
        # knows any one of them finds them all.
        anchor.dht.stop()
        assert nodes[1].overlay is not None
        async with Discovery((nodes[1].overlay.address,), rng=random.Random(3)) as late:
            await _wait_for_adverts(late, 3)


def _dead_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_with_no_dht_answer_the_client_falls_back_to_the_anchor_list(tmp_path: Path) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="p2pd-", dir="/tmp"))
    try:
        async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor:
            node = node_daemon(anchor.url, tmp_path, "a", run_dir, dht_port=0, peers=())
            dead = (("127.0.0.1", _dead_udp_port()),)
            async with node, AsyncClient(anchor.url, KeyPair.generate(), dht_seeds=dead) as client:
                await node.announce()
                await client.deploy(write_function(tmp_path, "echo"))
                outcome = await client.invoke("echo", 7)
                assert outcome.node_id == node.node_id and outcome.value == {"echo": 7}
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _advert(node_id: bytes, free_slots: int) -> adverts.Advert:
    capacity = Capacity(
        runtimes=("python3.11",),
        cores=2,
        memory_mb=1024,
        free_slots=free_slots,
        price_per_cpu_s=20,
        price_per_gb_s=2,
        load=0.0,
        coord=(0.0, 0.0, 0.0),
        coord_error=1.0,
        draining=False,
    )
    return adverts.Advert(node_id, b"k" * 32, "http://127.0.0.1:1", capacity, predicted_rtt_s=0.001)


async def test_a_busy_answer_against_an_advert_of_free_slots_costs_the_publisher_standing() -> None:
    overstated, honest = b"\x01" * 20, b"\x02" * 20
    discovery = Discovery([("127.0.0.1", 1)], rng=random.Random(1))
    discovery._cached = [_advert(overstated, free_slots=4), _advert(honest, free_slots=0)]
    now = wall_time()
    for _ in range(2):
        discovery.refused_busy(overstated.hex())
        discovery.refused_busy(honest.hex())  # it said it was full: busy is no surprise
    assert discovery.reputation.score(honest, now) == 1.0
    assert not discovery.reputation.trusted(overstated, now)  # ranked out for a while; it heals with time
    assert discovery.reputation.trusted(overstated, now + 600)


async def test_a_node_that_charges_over_its_advert_is_dropped_and_proven_a_liar(tmp_path: Path) -> None:
    """Issue #14, hole 12: adverts may claim anything (here: cheap prices) and were ranked on the claim.
    The receipt shows what the node really charges; over its own advert, the client drops it and
    sends the anchor the signed advert and receipt, which count as a proven lie."""
    from p2pfaas import rpc
    from p2pfaas.pricing import Prices
    from p2pfaas.trust.wire import NodeReputation

    async with dht_network(tmp_path, ("liar",)) as (anchor, (liar,)):
        assert anchor.dht is not None
        seeds = (anchor.dht.address,)
        async with Discovery(seeds, rng=random.Random(1)) as probe:
            await _wait_for_adverts(probe, 1)
        liar.service.prices = Prices(per_cpu_s_micro=10**6, per_gb_s_micro=10**6)  # not what it advertises
        async with AsyncClient(
            anchor.url, KeyPair.generate(), rng=random.Random(2), dht_seeds=seeds
        ) as client:
            await client.deploy(write_function(tmp_path, "sleepy"))
            outcome = await client.invoke("sleepy", {"s": 0.2})  # metered: 0.2 s of its memory
            assert outcome.node_id == liar.node_id and outcome.price_micro > 0
            assert client._discovery is not None and await client._discovery.entry_nodes() == []
            url = f"{anchor.url}/v1/reputation/{liar.node_id}"
            record = await rpc.call(client.session, "GET", url, NodeReputation, timeout_s=10)
            assert record.lies == 1
