"""Benchmark the DHT: the stock `kademlia` package beside ours (p2pfaas.dht), on the in-memory network.

Parts (each runs in its own process, so memory figures are clean; the table is printed at the end):
- churn:   N nodes, 5% datagram loss, half the nodes replaced over one virtual hour; then reads of 10 keys
           published before the churn by nodes that stay. Success = the reader got the publisher's value.
- hostile: N nodes of which 20% are hostile: they answer lookups with made-up contacts next to the key,
           hide values and drop stores. Same reads.
- scale:   N nodes join one by one (no loss); then 100 node lookups of random ids from random nodes:
           messages (datagrams, requests and replies) and hops (rounds) per lookup, and memory per node
           (RSS growth over the network, divided by N).
- vivaldi: ours only (the stock library has no coordinates): after an hour of traffic on a synthetic
           latency map, each sampled node picks the nearest of 20 random peers by predicted RTT; the ratio
           of the picked peer's true RTT to the truly nearest one's, median (baseline: a random pick).

Run: .venv/bin/python bench/bench_dht.py [--nodes 500] [--scale 1000,5000] [--parts churn,hostile,...]
Asserts nothing. One part alone: --part churn --impl ours --nodes 500 (prints one JSON line).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kademlia.crawling
from kademlia.network import Server as StockServer
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol

from p2pfaas import sim
from p2pfaas.dht.adversary import LyingNode, fake_contacts
from p2pfaas.dht.node import DhtConfig, DhtNode
from p2pfaas.identity import KeyPair

PORT = 4000
KEYS = 10
READS = 100
LOOKUPS = 100
# Hourly bucket refresh, as the stock server (and the paper) do; everything else is our default.
OURS = DhtConfig(refresh_interval_s=3600.0)


def ip(i: int) -> str:
    return f"10.{(i // 250) % 250}.{i % 250}.{1 + i // 62500}"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- hostile variants --------------------------------------------------------------------------------


class HostileStock(KademliaProtocol):  # type: ignore[misc]
    def rpc_find_node(self, sender: Any, nodeid: bytes, key: bytes) -> list[tuple[bytes, str, int]]:
        return fake_contacts(key, self.router.ksize)

    def rpc_find_value(self, sender: Any, nodeid: bytes, key: bytes) -> list[tuple[bytes, str, int]]:
        return fake_contacts(key, self.router.ksize)

    def rpc_store(self, sender: Any, nodeid: bytes, key: bytes, value: Any) -> bool:
        return True


class HostileStockServer(StockServer):  # type: ignore[misc]
    protocol_class = HostileStock


# --- one implementation behind one small interface ----------------------------------------------------


class Impl:
    """Start, stop, publish, read and look up, for the stock server or ours."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind = kind
        self.seed = seed
        random.seed(seed)  # the stock library draws from the global random

    async def start(self, net: sim.InMemoryNetwork, i: int, seeds: list[Any], hostile: bool = False) -> Any:
        host = net.add_host(ip(i))
        if self.kind == "stock":
            cls = HostileStockServer if hostile else StockServer
            node = cls(node_id=hashlib.sha1(f"{self.seed}/{i}".encode()).digest())
            with net.on_host(host):
                await node.listen(PORT, host)
                if seeds:
                    await node.bootstrap(seeds)
            return node
        factory = LyingNode if hostile else DhtNode
        keys = KeyPair.from_seed(f"{self.seed}/{i}".encode())
        node = factory(keys, rng=random.Random(f"{self.seed}/{i}"), config=OURS)
        await node.listen(PORT, host)
        if seeds:
            await node.bootstrap(seeds)
        return node

    @staticmethod
    def address(node: Any) -> tuple[str, int]:
        if isinstance(node, DhtNode):
            return node.address
        sockname = node.transport.get_extra_info("sockname")
        return (sockname[0], sockname[1])

    def key(self, i: int) -> bytes:
        return hashlib.sha1(f"key-{i}".encode()).digest()

    async def publish(self, node: Any, i: int) -> None:
        if self.kind == "stock":
            await node.set(f"key-{i}", f"value-{i}")
        else:
            await node.publish(self.key(i), host="10.9.9.9", port=8000 + i)

    async def read(self, node: Any, i: int, publisher: Any) -> bool:
        if self.kind == "stock":
            try:
                return bool(await node.get(f"key-{i}") == f"value-{i}")
            except (ValueError, TypeError):  # the stock crawl can crash on an empty result (defect 3)
                return False
        records = await node.get(self.key(i))
        return any(r.signer == publisher.keys.public.raw for r in records)

    async def lookup(self, node: Any, target: bytes) -> int:
        """A node lookup; returns its rounds (hops)."""
        if self.kind == "stock":
            before = _ROUNDS[0]
            peers = node.protocol.router.find_neighbors(Node(target))
            crawl = kademlia.crawling.NodeSpiderCrawl(
                node.protocol, Node(target), peers, node.ksize, node.alpha
            )
            await crawl.find()
            return _ROUNDS[0] - before
        result = await node._lookup(target, None, want_records=False)
        return int(result.rounds)


_ROUNDS = [0]
_stock_find = kademlia.crawling.SpiderCrawl._find


async def _counted_find(self: Any, rpcmethod: Any) -> Any:
    _ROUNDS[0] += 1
    return await _stock_find(self, rpcmethod)


kademlia.crawling.SpiderCrawl._find = _counted_find  # counts rounds; behaviour unchanged


def stop(node: Any) -> None:
    node.stop()


# --- parts -------------------------------------------------------------------------------------------


async def _network(net: sim.InMemoryNetwork, impl: Impl, nodes: int, hostile: set[int]) -> list[Any]:
    out: list[Any] = []
    for i in range(nodes):
        seeds = [Impl.address(out[0])] if out else []
        out.append(await impl.start(net, i, seeds, hostile=i in hostile))
    return out


def part_reads(kind: str, nodes: int, seed: int, *, churn: bool) -> dict[str, Any]:
    impl = Impl(kind, seed)

    async def main(net: sim.InMemoryNetwork) -> dict[str, Any]:
        rng = random.Random(seed)
        hostile = set() if churn else set(rng.sample(range(1 + KEYS, nodes), nodes // 5))
        started = time.perf_counter()
        everyone = await _network(net, impl, nodes, hostile)
        publishers = everyone[1 : 1 + KEYS]
        for i, publisher in enumerate(publishers):
            await impl.publish(publisher, i)
        alive = [n for j, n in enumerate(everyone[1 + KEYS :], start=1 + KEYS) if j not in hostile]
        if churn:
            for step in range(nodes // 2):
                await asyncio.sleep(3600.0 / (nodes // 2))
                leaving = alive.pop(rng.randrange(len(alive)))
                stop(leaving)
                net.crash(Impl.address(leaving)[0])
                seed_node = rng.choice([everyone[0], *publishers, *alive])
                alive.append(await impl.start(net, nodes + step, [Impl.address(seed_node)]))
        found = 0
        for r in range(READS):
            i = r % KEYS
            found += await impl.read(rng.choice(alive), i, publishers[i])
        wall = time.perf_counter() - started
        return {"found": found, "reads": READS, "wall_s": wall, "datagrams": net.stats.datagrams_sent}

    options = sim.FaultOptions(datagram_loss=0.05) if churn else None
    return sim.run(main, seed=seed, options=options)


def part_scale(kind: str, nodes: int, seed: int) -> dict[str, Any]:
    impl = Impl(kind, seed)

    async def main(net: sim.InMemoryNetwork) -> dict[str, Any]:
        rng = random.Random(seed)
        base = rss_bytes()
        started = time.perf_counter()
        everyone = await _network(net, impl, nodes, set())
        join_wall = time.perf_counter() - started
        per_node = (rss_bytes() - base) / nodes
        messages, hops = [], []
        for _ in range(LOOKUPS):
            node = rng.choice(everyone)
            before = net.stats.datagrams_sent
            hops.append(await impl.lookup(node, rng.randbytes(20)))
            messages.append(net.stats.datagrams_sent - before)
        return {
            "messages": statistics.median(messages),
            "hops": statistics.median(hops),
            "bytes_per_node": per_node,
            "join_wall_ms": 1000 * join_wall / nodes,
        }

    return sim.run(main, seed=seed)


def part_vivaldi(nodes: int, seed: int) -> dict[str, Any]:
    latency = sim.SyntheticLatency(seed=seed)

    async def main(net: sim.InMemoryNetwork) -> dict[str, Any]:
        rng = random.Random(seed)
        impl = Impl("ours", seed)
        everyone = await _network(net, impl, nodes, set())
        for _ in range(6):  # an hour of ordinary traffic: each node looks up a few random ids
            await asyncio.gather(*(n.find_closest(rng.randbytes(20)) for n in everyone))
            await asyncio.sleep(600)
        ratios, random_ratios = [], []
        for node in rng.sample(everyone, min(200, nodes)):
            peers = rng.sample([n for n in everyone if n is not node], 20)
            me = node.address[0]
            true = {id(p): latency(me, p.address[0]) for p in peers}
            viv = node.proto.vivaldi
            picked = min(peers, key=lambda p: viv.predict_rtt_s(p.proto.vivaldi.coord))
            best = min(true.values())
            ratios.append(true[id(picked)] / best)
            random_ratios.append(true[id(rng.choice(peers))] / best)
        return {"median": statistics.median(ratios), "random_median": statistics.median(random_ratios)}

    return sim.run(main, seed=seed, options=sim.FaultOptions(latency=latency))


def run_part(part: str, kind: str, nodes: int, seed: int) -> dict[str, Any]:
    if part in ("churn", "hostile"):
        return part_reads(kind, nodes, seed, churn=part == "churn")
    if part == "scale":
        return part_scale(kind, nodes, seed)
    return part_vivaldi(nodes, seed)


# --- driver ------------------------------------------------------------------------------------------


def spawn(part: str, kind: str, nodes: int, seed: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--part",
        part,
        "--impl",
        kind,
        "--nodes",
        str(nodes),
        "--seed",
        str(seed),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else f"exit {out.returncode}"}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500, help="nodes in the churn and hostile parts")
    parser.add_argument("--scale", default="1000,5000", help="node counts of the scale part")
    parser.add_argument("--vivaldi-nodes", type=int, default=300)
    parser.add_argument("--parts", default="churn,hostile,scale,vivaldi")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        print(json.dumps(run_part(args.part, args.impl, args.nodes, args.seed)))
        return
    parts = args.parts.split(",")
    rows: list[tuple[str, str, str]] = []

    def cell(result: dict[str, Any], fmt: str) -> str:
        return result["error"][:40] if "error" in result else fmt.format(**result)

    for part in ("churn", "hostile"):
        if part in parts:
            stock, ours = (spawn(part, k, args.nodes, args.seed) for k in ("stock", "ours"))
            what = "5% loss, half replaced/h" if part == "churn" else "20% hostile nodes"
            fmt = "{found}/{reads} ({wall_s:.0f} s wall)"
            rows.append((f"lookup success, {args.nodes} nodes, {what}", cell(stock, fmt), cell(ours, fmt)))
    if "scale" in parts:
        for n in (int(x) for x in args.scale.split(",")):
            stock, ours = (spawn("scale", k, n, args.seed) for k in ("stock", "ours"))
            rows.append(
                (
                    f"messages per lookup, {n} nodes",
                    cell(stock, "{messages:.0f}"),
                    cell(ours, "{messages:.0f}"),
                )
            )
            rows.append((f"hops per lookup, {n} nodes", cell(stock, "{hops:.0f}"), cell(ours, "{hops:.0f}")))
            kb = "{bytes_per_node:.0f} B"
            rows.append((f"memory per node, {n} nodes", cell(stock, kb), cell(ours, kb)))
            ms = "{join_wall_ms:.1f} ms"
            rows.append((f"wall time per join, {n} nodes", cell(stock, ms), cell(ours, ms)))
    if "vivaldi" in parts:
        ours = spawn("vivaldi", "ours", args.vivaldi_nodes, args.seed)
        rows.append(
            (
                f"nearest-of-20 pick / true nearest RTT, median, {args.vivaldi_nodes} nodes",
                cell(ours, "{random_median:.2f}x (random pick)"),
                cell(ours, "{median:.2f}x"),
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'stock kademlia 2.2.3':>28}  {'p2pfaas.dht':>28}")
    for name, stock_cell, ours_cell in rows:
        print(f"{name:{width}}  {stock_cell:>28}  {ours_cell:>28}")


if __name__ == "__main__":
    main()
