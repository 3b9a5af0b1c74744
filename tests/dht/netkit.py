"""Many DHT nodes on the in-memory network: the harness the DHT tests and the benchmark share."""

from __future__ import annotations

import random
from collections.abc import Callable

from kademlia.node import Node

from p2pfaas import sim
from p2pfaas.clock import wall_time
from p2pfaas.dht.lookup import DisjointLookup
from p2pfaas.dht.node import DhtConfig, DhtNode
from p2pfaas.identity import KeyPair


def host_ip(i: int) -> str:
    """Node i's address: each in its own /24, as independent volunteers are."""
    return f"10.{(i // 250) % 250}.{i % 250}.{1 + i // 62500}"


async def start_node(
    net: sim.InMemoryNetwork,
    ip: str,
    *,
    seed: str,
    seeds: list[tuple[str, int]],
    config: DhtConfig | None = None,
    client: bool = False,
    port: int = 4000,
    factory: Callable[..., DhtNode] = DhtNode,
) -> DhtNode:
    net.add_host(ip)
    with net.on_host(ip):
        node = factory(
            KeyPair.from_seed(seed.encode()), rng=random.Random(seed), config=config, client=client
        )
        await node.listen(port, ip)
        if seeds:
            await node.bootstrap(seeds)
    return node


async def start_network(
    net: sim.InMemoryNetwork, count: int, *, seed: int, config: DhtConfig | None = None
) -> list[DhtNode]:
    """`count` nodes joining one after another, each through the first (the bootstrap node)."""
    nodes: list[DhtNode] = []
    for i in range(count):
        seeds = [nodes[0].address] if nodes else []
        nodes.append(await start_node(net, host_ip(i), seed=f"{seed}/{i}", seeds=seeds, config=config))
    return nodes


def stop_all(nodes: list[DhtNode]) -> None:
    for node in nodes:
        node.stop()


def contact(node: DhtNode) -> Node:
    """`node` as another node's routing table holds it: id and address."""
    return Node(node.node.id, *node.address)


def lookup(
    node: DhtNode,
    target: bytes,
    seeds: list[Node],
    *,
    want_records: bool = False,
    paths: int | None = None,
    per_subnet: int | None = None,
) -> DisjointLookup:
    """A `DisjointLookup` from `node` with its config's k, alpha, paths and per-subnet limit, on the loop's
    wall clock, as `DhtNode` runs its own."""
    config = node.config
    return DisjointLookup(
        node.proto,
        target,
        seeds,
        ksize=config.ksize,
        alpha=config.alpha,
        paths=config.paths if paths is None else paths,
        per_subnet=config.per_subnet if per_subnet is None else per_subnet,
        want_records=want_records,
        wall_clock=wall_time,
    )


def closest(nodes: list[DhtNode], target: bytes, count: int) -> list[bytes]:
    """The ids of the `count` nodes of `nodes` closest to `target`: what a perfect lookup returns."""
    return [n.node.id for n in sorted(nodes, key=lambda n: n.node.distance_to(Node(target)))[:count]]
