"""Benchmark the simulator: kademlia joins on the in-memory network, and aiohttp requests in memory versus
over real loopback TCP (the baseline, measured in the same run). Prints a table; asserts nothing.

Run: .venv/bin/python bench/bench_sim.py [--nodes 200] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from kademlia.network import Server as KademliaServer

from p2pfaas import sim


def bench_kademlia(nodes: int, seed: int) -> dict[str, float]:
    async def main(net: sim.InMemoryNetwork) -> dict[str, float]:
        loop = asyncio.get_running_loop()
        rng = random.Random(seed)
        servers: list[KademliaServer] = []
        wall_start, virtual_start = time.perf_counter(), loop.time()
        try:
            for _ in range(nodes):
                server = KademliaServer(node_id=rng.randbytes(20))
                with net.on_host(net.add_host()):
                    await server.listen(8468)
                if servers:
                    await server.bootstrap([(net.hosts[0], 8468)])
                servers.append(server)
        finally:
            for server in servers:
                server.stop()
        wall_s = time.perf_counter() - wall_start
        return {
            "messages": net.stats.datagrams_delivered,
            "wall_s": wall_s,
            "virtual_s": loop.time() - virtual_start,
        }

    return sim.run(main, seed=seed, options=sim.FaultOptions(jitter_s=0.005))


def make_app() -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 256)

    app = web.Application()
    app.router.add_get("/", hello)
    return app


async def http_load(host: str, port: int, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """Serve on (host, port) and fetch `requests` times with `concurrency` workers; wall latencies in s."""
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    port = runner.addresses[0][1]  # port 0 asks for a free one
    latencies: list[float] = []
    remaining = iter(range(requests))
    try:
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                for _ in remaining:
                    start = time.perf_counter()
                    async with session.get(f"http://{host}:{port}/") as resp:
                        await resp.read()
                    latencies.append(time.perf_counter() - start)

            wall_start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall_s = time.perf_counter() - wall_start
    finally:
        await runner.cleanup()
    return wall_s, latencies


def bench_http(requests: int, concurrency: int, seed: int) -> dict[str, tuple[float, list[float]]]:
    def on_sim(net: sim.InMemoryNetwork) -> Coroutine[Any, Any, tuple[float, list[float]]]:
        return http_load("10.0.0.1", 8080, requests, concurrency)

    results = {"in-memory (SimLoop)": sim.run(on_sim, seed=seed)}
    results["loopback TCP (asyncio)"] = asyncio.run(http_load("127.0.0.1", 0, requests, concurrency))
    return results


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    kad = bench_kademlia(args.nodes, args.seed)
    print(f"\nkademlia (stock), {args.nodes} nodes joining one by one on the simulator")
    print(f"{'messages':>10} {'wall s':>8} {'virtual s':>10} {'msgs/wall s':>12} {'virtual s/wall s':>17}")
    print(
        f"{kad['messages']:>10.0f} {kad['wall_s']:>8.2f} {kad['virtual_s']:>10.1f} "
        f"{kad['messages'] / kad['wall_s']:>12.0f} {kad['virtual_s'] / kad['wall_s']:>17.1f}"
    )

    results = bench_http(args.requests, args.concurrency, args.seed)
    baseline_rps = args.requests / results["loopback TCP (asyncio)"][0]
    print(f"\naiohttp GET, {args.requests} requests, {args.concurrency} concurrent (latencies in wall ms)")
    print(f"{'transport':<24} {'req/s':>8} {'ratio':>6} {'median ms':>10} {'p99 ms':>8}")
    for name, (wall_s, latencies) in results.items():
        rps = args.requests / wall_s
        print(
            f"{name:<24} {rps:>8.0f} {rps / baseline_rps:>6.2f} "
            f"{statistics.median(latencies) * 1e3:>10.3f} {percentile(latencies, 0.99) * 1e3:>8.3f}"
        )


if __name__ == "__main__":
    main()
