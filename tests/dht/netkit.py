"""Many DHT nodes on the in-memory network: the harness the DHT tests and the benchmark share."""

from __future__ import annotations

import random
from collections.abc import Callable

from p2pfaas import sim
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
