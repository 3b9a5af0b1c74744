"""The node's overlay on the in-memory network: join, adverts, find_nearby by Vivaldi, providers,
and life without the anchor's bootstrap node."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import statistics

from p2pfaas import sim
from p2pfaas.dht.node import DhtConfig, running_node
from p2pfaas.identity import KeyPair
from p2pfaas.node.overlay import Load, Offer, Overlay, OverlayConfig

DIGEST = "ab" * 32
FAST = DhtConfig(tick_s=10.0, refresh_interval_s=120.0, record_ttl_s=300.0, republish_interval_s=100.0)


def _ip(i: int) -> str:
    return f"10.1.{i}.1"


async def _overlays(
    net: sim.InMemoryNetwork,
    stack: contextlib.AsyncExitStack,
    count: int,
    peers: list[tuple[str, int]],
    first: int = 0,
) -> list[Overlay]:
    out = []
    for i in range(first, first + count):
        ip = net.add_host(_ip(i))
        offer = Offer(
            url=f"http://{ip}:8000",
            runtimes=("python3.11",),
            cores=4,
            memory_mb=4096,
            price_per_cpu_s=10 * (1 + i % 3),
            unpaid="owners" if i == 2 else "none",
        )
        config = OverlayConfig(host=ip, port=4000, peers=tuple(peers), advert_interval_s=30.0, dht=FAST)
        overlay = Overlay(
            KeyPair.from_seed(f"ov{i}".encode()),
            rng=random.Random(i),
            config=config,
            offer=offer,
            load=functools.partial(Load, free_slots=0 if i == 1 else 2, load=0.5),
        )
        out.append(await stack.enter_async_context(overlay))
    return out


def test_nodes_join_through_the_bootstrap_node_and_find_each_other_nearest_first() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with contextlib.AsyncExitStack() as stack:
            net.add_host("10.0.0.1")
            boot = await stack.enter_async_context(running_node("10.0.0.1", 4000, rng=random.Random(0)))
            overlays = await _overlays(net, stack, 12, [boot.address])
            await asyncio.sleep(600)  # joins, adverts, refreshes: Vivaldi samples accumulate
            me = overlays[0]
            assert all(o.joined.is_set() for o in overlays)
            nearby = await me.find_nearby("python3.11", count=20)
            ids = [a.node_id for a in nearby]
            assert me.keys.node_id not in ids and len(ids) == 11
            assert ids[-1] == overlays[1].keys.node_id  # no free slot: last, not never
            rtts = [a.predicted_rtt_s for a in nearby[:-1]]
            assert rtts == sorted(rtts)
            cheap = await me.find_nearby("python3.11", count=20, max_price=10)
            assert {a.capacity.price_per_cpu_s for a in cheap} == {10}
            assert await me.find_nearby("nodejs") == []
            # Each advert says who may run there without paying (issue #14, hole 1).
            unpaid = {a.node_id: a.capacity.unpaid for a in nearby}
            assert unpaid.pop(overlays[2].keys.node_id) == "owners" and set(unpaid.values()) == {"none"}
            # Predicted RTTs track the synthetic map closely enough to pick a near node.
            me_host = _ip(0)
            true = {o.keys.node_id: 2 * net.delay_s(me_host, _ip(i)) for i, o in enumerate(overlays) if i}
            picked = nearby[0].node_id
            assert true[picked] <= 1.5 * min(true.values())
            errors = [abs(a.predicted_rtt_s - true[a.node_id]) / true[a.node_id] for a in nearby]
            assert statistics.median(errors) < 0.5
            assert len(me.contacts()) >= 10 and me.predicted_rtt(overlays[2].keys.node_id) is not None

    sim.run(main, seed=21, options=sim.FaultOptions(latency=sim.SyntheticLatency(seed=21)))


def test_providers_and_life_after_the_bootstrap_node_is_gone() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        async with contextlib.AsyncExitStack() as stack:
            net.add_host("10.0.0.1")
            boot = await stack.enter_async_context(running_node("10.0.0.1", 4000, rng=random.Random(0)))
            overlays = await _overlays(net, stack, 6, [boot.address])
            await asyncio.sleep(60)
            overlays[2].on_bundle_cached(DIGEST)
            await overlays[3].announce_provider(DIGEST)
            await asyncio.sleep(5)
            assert sorted(await overlays[0].providers(DIGEST)) == [
                f"http://{_ip(2)}:8000",
                f"http://{_ip(3)}:8000",
            ]
            assert await overlays[2].providers(DIGEST) == [f"http://{_ip(3)}:8000"]  # not itself
            # The anchor's bootstrap node goes away for good: the overlay keeps working...
            boot.stop()
            net.crash("10.0.0.1")
            overlays[3].withdraw_provider(DIGEST)
            await asyncio.sleep(2 * FAST.record_ttl_s)
            assert await overlays[0].providers(DIGEST) == [f"http://{_ip(2)}:8000"]
            assert len(await overlays[5].find_nearby("python3.11", count=10)) == 5
            # ...and a new node joins through any peer (`--peer`).
            late = (await _overlays(net, stack, 1, [overlays[4].address], first=6))[0]
            await asyncio.sleep(60)
            assert late.joined.is_set()
            assert len(await late.find_nearby("python3.11", count=20)) == 6

    sim.run(main, seed=22)


def test_peer_addresses_parse_or_say_why_not() -> None:
    import pytest

    from p2pfaas.dht import parse_peer

    assert parse_peer("10.0.0.1:8468") == ("10.0.0.1", 8468)
    assert parse_peer("[::1]:4000") == ("::1", 4000)
    for bad in ("10.0.0.1", ":80", "host:0", "host:99999", "host:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_peer(bad)


def test_a_relayed_node_is_a_dht_client_named_by_its_relay_in_its_advert() -> None:
    """Issue #12: a node behind NAT asks the DHT but is put in nobody's routing table; its advert
    names the relay that answers for it, and it announces no bundles (peers could not fetch them)."""

    async def main(net: sim.InMemoryNetwork) -> None:
        async with contextlib.AsyncExitStack() as stack:
            net.add_host("10.0.0.1")
            boot = await stack.enter_async_context(running_node("10.0.0.1", 4000, rng=random.Random(0)))
            overlays = await _overlays(net, stack, 5, [boot.address])
            await asyncio.sleep(60)
            behind = overlays[4]
            relayed = f"http://{_ip(0)}:8000/v1/relay/{behind.keys.key_id}"
            behind.set_url(relayed, relayed=True)
            assert await behind.announce_provider(DIGEST) == 0
            # Everyone forgets the contact they had (as a fresh network would never have learnt it).
            for other in [*overlays[:4]]:
                for contact in other.contacts():
                    if contact.id == behind.keys.node_id:
                        other.dht.proto.router.remove_contact(contact)
            await asyncio.sleep(300)  # lookups, refreshes and adverts from the relayed node meanwhile
            for other in overlays[:4]:
                assert behind.keys.node_id not in {c.id for c in other.contacts()}
            adverts = {a.node_id: a for a in await overlays[1].find_nearby("python3.11", count=10)}
            assert adverts[behind.keys.node_id].url == relayed  # callers go through the relay
            assert adverts[overlays[2].keys.node_id].url == f"http://{_ip(2)}:8000"  # direct: as before
            assert len(await behind.find_nearby("python3.11", count=10)) == 4  # it still reads the DHT

    sim.run(main, seed=23)
