"""DisjointLookup on the in-memory network: the k closest found from far seeds, no node asked twice over
the paths, one address block held to `per_subnet` queries, records checked before they are believed."""

from __future__ import annotations

import asyncio
import dataclasses

from kademlia.node import Node

from p2pfaas import sim
from p2pfaas.clock import wall_time
from p2pfaas.dht.node import DhtConfig, DhtNode
from p2pfaas.dht.records import make_record, provider_key
from p2pfaas.dht.wire import Record
from p2pfaas.identity import KeyPair
from tests.dht.netkit import closest, contact, host_ip, lookup, start_network, start_node, stop_all

# k = 10 in 80 nodes: a lookup has to crawl, its seeds do not already hold the answer.
CONFIG = DhtConfig(ksize=10, replicas=10, refresh_interval_s=7200.0)
TARGETS = [bytes([i * 37 % 256]) * 20 for i in range(1, 6)]


def _far_seeds(node: DhtNode, target: bytes, count: int) -> list[Node]:
    """The `count` contacts of `node` farthest from `target`: a lookup from them must walk the whole way."""
    contacts = sorted(node.proto.router.contacts(), key=Node(target).distance_to)
    return contacts[-count:]


def _served(nodes: list[DhtNode]) -> list[int]:
    return [n.proto.stats.requests_served for n in nodes]


def test_a_lookup_from_far_seeds_finds_the_k_closest_nodes_of_the_network() -> None:
    async def main(net: sim.InMemoryNetwork) -> list[tuple[list[bytes], list[bytes], int]]:
        nodes = await start_network(net, 80, seed=41, config=CONFIG)
        me = nodes[7]
        others = [n for n in nodes if n is not me]
        found = []
        for target in TARGETS:
            result = await lookup(me, target, _far_seeds(me, target, 3)).run()
            found.append(([n.id for n in result.nodes], closest(others, target, CONFIG.ksize), result.rounds))
        stop_all(nodes)
        return found

    for got, want, rounds in sim.run(main, seed=41):
        assert got == want
        assert rounds >= 2  # it had to walk: the far seeds did not know the answer


def test_no_node_is_asked_twice_over_the_disjoint_paths() -> None:
    async def main(net: sim.InMemoryNetwork) -> list[tuple[list[int], int]]:
        nodes = await start_network(net, 80, seed=42, config=CONFIG)
        me = nodes[3]
        await asyncio.sleep(60)  # the joins' own traffic is over
        seen = []
        for target in TARGETS:
            before = _served(nodes)
            result = await lookup(me, target, _far_seeds(me, target, 9), paths=3).run()
            seen.append(([a - b for a, b in zip(_served(nodes), before, strict=True)], result.messages))
        stop_all(nodes)
        return seen

    for served, messages in sim.run(main, seed=42):
        assert max(served) == 1  # each node answered at most one query of the three paths
        assert sum(served) == messages > CONFIG.ksize


def test_one_address_block_gets_at_most_per_subnet_queries() -> None:
    block = [f"198.51.100.{10 + i}" for i in range(12)]

    async def main(net: sim.InMemoryNetwork) -> tuple[int, int]:
        config = dataclasses.replace(CONFIG, protocol=dataclasses.replace(CONFIG.protocol, max_per_subnet=20))
        nodes = await start_network(net, 20, seed=43, config=config)
        crowd = [
            await start_node(net, ip, seed=f"block/{ip}", seeds=[nodes[0].address], config=config)
            for ip in block
        ]
        await asyncio.sleep(60)
        me = nodes[5]
        seeds = [contact(n) for n in crowd]
        before = sum(_served(crowd))
        await lookup(me, crowd[0].node.id, seeds, per_subnet=2).run()
        limited = sum(_served(crowd)) - before
        before = sum(_served(crowd))
        await lookup(me, crowd[0].node.id, seeds, per_subnet=len(block)).run()
        unlimited = sum(_served(crowd)) - before
        stop_all([*nodes, *crowd])
        return limited, unlimited

    limited, unlimited = sim.run(main, seed=43)
    assert limited == 2
    assert unlimited > 2  # the same seeds, without the limit: the block was asked more


def test_a_lookup_with_no_seeds_returns_an_empty_result() -> None:
    async def main(net: sim.InMemoryNetwork) -> tuple[list[Node], int, int]:
        alone = await start_node(net, host_ip(0), seed="alone", seeds=[], config=CONFIG)
        result = await lookup(alone, TARGETS[0], []).run()
        alone.stop()
        return result.nodes, result.rounds, result.messages

    assert sim.run(main, seed=44) == ([], 0, 0)  # nothing found, and no crash (defect 3)


def test_an_address_that_timed_out_is_skipped_by_the_next_lookup() -> None:
    async def main(net: sim.InMemoryNetwork) -> tuple[int, int, int]:
        nodes = await start_network(net, 10, seed=45, config=CONFIG)
        me = nodes[1]
        dead = Node(b"\x01" * 20, "10.200.0.1", 4000)  # nobody listens there
        first = await lookup(me, TARGETS[0], [dead, contact(nodes[2])], paths=1).run()
        second = await lookup(me, TARGETS[0], [dead, contact(nodes[2])], paths=1).run()
        stop_all(nodes)
        return first.messages - second.messages, me.proto.stats.skipped_unresponsive, len(second.nodes)

    fewer, skipped, found = sim.run(main, seed=45)
    assert fewer == 1 and skipped == 1
    assert found == 9  # every live node but the one looking is still found


def test_records_are_checked_and_the_newest_of_each_publisher_wins() -> None:
    publisher = KeyPair.from_seed(b"publisher")

    async def main(net: sim.InMemoryNetwork) -> tuple[list[int], bool, int, list[int]]:
        nodes = await start_network(net, 30, seed=46, config=CONFIG)
        me = nodes[0]
        key = provider_key(b"\x11" * 32)
        holders = sorted(nodes[1:], key=lambda n: n.node.distance_to(Node(key)))[:3]
        now = wall_time()

        def record(seq: int) -> Record:
            return make_record(publisher, key=key, seq=seq, expires_at=now + 600, host="10.1.1.1", port=8000)

        old, new = record(1), record(2)
        # A record of the same publisher with a higher seq, altered after signing: it must not win.
        forged = dataclasses.replace(record(9), host="10.6.6.6")
        holders[0].storage.put(old, now)
        holders[1].storage.put(new, now)
        holders[2].storage.put(forged, now)
        result = await lookup(me, key, me.proto.router.find_neighbors(Node(key)), want_records=True).run()
        got = [r.seq for r in result.records.values()]
        held_by_new = result.holders[publisher.node_id].id == holders[1].node.id
        wrong_key = await lookup(
            me, TARGETS[0], me.proto.router.find_neighbors(Node(key)), want_records=True
        ).run()
        stop_all(nodes)
        return got, held_by_new, me.proto.stats.bad_records, [r.seq for r in wrong_key.records.values()]

    got, held_by_new, bad_records, elsewhere = sim.run(main, seed=46)
    assert got == [2] and held_by_new
    assert bad_records >= 1  # the forged one was seen, checked and refused
    assert elsewhere == []  # records under another key are not taken for the target's
