"""Placement with the real node code: anchors, nodes and clients on the simulator (`p2pfaas.sim`).

Unlike bench_placement.py (the policy cores on an event heap), every node here is the real daemon:
aiohttp server, Router, signed gossip, admission, receipts; only run time is modelled
(ModelExecutor). Nodes have 1, 2 or 4 slots; Poisson arrivals at `--load` of total capacity go to
uniformly random entry nodes; the response time is the client's, in virtual seconds. No oracle can
run here; compare with the event-heap table. Prints a table; asserts nothing.

Run: .venv/bin/python bench/bench_placement_real.py [--nodes 100] [--duration 20] [--policy ours ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from pathlib import Path

from p2pfaas import sim
from p2pfaas.client import AsyncClient
from p2pfaas.exec.model_exec import ModelExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.sim import testbed

SIZES = (1, 2, 4)
MEAN_RUN_S = 0.5
CLIENTS = 10


def _function(root: Path) -> Path:
    directory = root / "echo"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text("def handle(event):\n    return {'echo': event}\n")
    (directory / "p2pfaas.toml").write_text(
        'name = "echo"\nversion = "1.0.0"\nruntime = "python3.11"\nhandler = "main:handle"\n'
        "memory_mb = 64\ntimeout_s = 60.0\ndeterministic = false\n"
    )
    return directory


async def _scenario(
    net: sim.InMemoryNetwork,
    root: Path,
    *,
    nodes: int,
    duration_s: float,
    load: float,
    policy: str,
    seed: int,
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    async with contextlib.AsyncExitStack() as stack:
        anchor = await testbed.add_anchor(net, stack, root)
        daemons: list[NodeDaemon] = []
        slots_total = 0
        for i in range(nodes):
            slots = rng.choice(SIZES)
            slots_total += slots
            executor = ModelExecutor(rng=random.Random(f"{seed}/{i}"), slots=slots, mean_run_s=MEAN_RUN_S)
            node = await testbed.add_node(
                net,
                stack,
                anchor.url,
                root,
                i,
                seed=seed,
                executor=executor,
                slots=slots,
                queue_size=1000,
                placement=policy,
                announce_interval_s=3600.0,
            )
            daemons.append(node)
        # Several lessees on their own hosts: one aiohttp session allows only 100 connections at once,
        # which would queue requests in the client rather than in the network being measured.
        lessee = KeyPair.from_seed(b"bench lessee")
        clients: list[tuple[str, AsyncClient]] = []
        for c in range(CLIENTS):
            client_ip = net.add_host(f"10.2.0.{c + 1}")
            with net.on_host(client_ip):
                client = await stack.enter_async_context(
                    AsyncClient(anchor.url, lessee, rng=random.Random(f"{seed}/client/{c}"))
                )
                if c == 0:
                    await client.deploy(_function(root))
                clients.append((client_ip, client))
        for node in daemons:
            with net.on_host(node.config.host):
                await node.announce()
        for node in daemons:
            with net.on_host(node.config.host):
                await node.placement.refresh_neighbours()
        await asyncio.sleep(10.0)  # gossip settles; every node's view fills
        rate = load * slots_total / MEAN_RUN_S
        times: list[float] = []
        warmup_until = loop.time() + duration_s / 4

        async def one(i: int, client: AsyncClient) -> None:
            started = loop.time()
            outcome = await client.invoke("echo", i)
            assert outcome.value == {"echo": i}
            if started >= warmup_until:
                times.append(loop.time() - started)

        wall = time.perf_counter()
        tasks = []
        end = loop.time() + duration_s
        i = 0
        while loop.time() < end:
            client_ip, client = clients[i % CLIENTS]
            with net.on_host(client_ip):
                tasks.append(asyncio.ensure_future(one(i, client)))
            i += 1
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - wall
        routers = [n.placement.router.stats for n in daemons]
        times.sort()
        return {
            "invocations": float(i),
            "p50": times[len(times) // 2],
            "p99": times[int(0.99 * len(times))],
            "forwards": sum(r.forwarded + r.refused_forwards for r in routers) / i,
            "refused": sum(r.refused_forwards for r in routers) / i,
            "probes": sum(r.probes for r in routers) / i,
            "slots": float(slots_total),
            "wall": wall,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20.0, help="virtual seconds of arrivals")
    parser.add_argument("--load", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policy", action="append", help="default: ours, power-of-2, random")
    args = parser.parse_args()
    print(
        f"{args.nodes} real nodes of {SIZES} slots on the in-memory network, load {args.load:.0%}, "
        f"{args.duration:g} virtual s of arrivals (first quarter not measured), seed {args.seed}\n"
    )
    print("| policy | invocations | p50 (ms) | p99 (ms) | probes/inv | forwards/inv | refused/inv | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for policy in args.policy or ["ours", "power-of-2", "random"]:
        with tempfile.TemporaryDirectory(prefix="p2pbp-") as tmp:

            async def run(net: sim.InMemoryNetwork, policy: str = policy, tmp: str = tmp) -> dict[str, float]:
                return await _scenario(
                    net, Path(tmp), nodes=args.nodes, duration_s=args.duration, load=args.load,
                    policy=policy, seed=args.seed,
                )  # fmt: skip

            r = sim.run(run, seed=args.seed)
        print(
            f"| {policy} | {r['invocations']:.0f} | {r['p50'] * 1000:.0f} | {r['p99'] * 1000:.0f} "
            f"| {r['probes']:.2f} | {r['forwards']:.2f} | {r['refused']:.2f} | {r['wall']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
