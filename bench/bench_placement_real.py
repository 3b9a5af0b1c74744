"""Placement with the real node code: anchors, nodes and clients on the simulator (`p2pfaas.sim`).

Unlike bench_placement.py (the policy cores on an event heap), every node here is the real daemon:
aiohttp server, Router, signed gossip, admission, receipts; only run time is modelled
(ModelExecutor). Node sizes are drawn from `--sizes` (default 1, 2, 4, 8 or 16 slots, as in the
event-heap model); Poisson arrivals at `--load` of total capacity go to uniformly random entry nodes;
the response time is the client's, in virtual seconds. Prints a table; asserts nothing.

The baseline in the same run is a join-the-shortest-queue oracle on the same node code: every
router's view is replaced by one that reads every other router's exact queue in this process (no
gossip age at all), and the policy sends each invocation to the nearest free slot, else to the least
expected wait. No node could run it; it bounds what placement can do here.

Run: .venv/bin/python bench/bench_placement_real.py [--nodes 200] [--duration 10] [--jobs 2] [--policy P ...]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from p2pfaas import sim
from p2pfaas.client import AsyncClient
from p2pfaas.client.wallet import Wallet
from p2pfaas.exec.model_exec import ModelExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeResult
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.router import Router, SendForward
from p2pfaas.placement.policy import LOCAL, POLICIES, Decision, Kind, LocalState, Peers, ProbeAnswer
from p2pfaas.placement.view import Candidate, LoadView, PeerLoad
from p2pfaas.placement.wire import ForwardRequest
from p2pfaas.sim import testbed

MEAN_RUN_S = 0.5
CONNECTIONS_PER_CLIENT = 100  # aiohttp's default connector limit per client session
ORACLE = "jsq-oracle"


@dataclass
class ExactView(LoadView):
    """The oracle's view: every other router's exact load, read directly (same process), counting
    forwards on their way there (sent, not yet arrived) as load, so that entry nodes deciding in the
    same instant do not all pick the same free slot."""

    routers: dict[str, tuple[str, Router]] = field(default_factory=dict)  # node id -> (url, router)
    in_transit: dict[str, set[str]] = field(default_factory=dict)  # url -> invocation ids, shared

    def candidates(self, now: float, digest: str = "") -> list[Candidate]:
        out = []
        for node_id, (url, r) in self.routers.items():
            if node_id == self.self_id or r.draining:
                continue
            arriving = sum(1 for i in self.in_transit.get(url, ()) if not r.knows(i))
            free = r.free_slots() - arriving
            queued = r.queue_length() + max(0, -free)
            out.append(Candidate(node_id, url, r.capacity, max(0, free), queued, self.rtt(node_id), 0, 0.0))
        return out

    def get(self, node_id: str) -> PeerLoad | None:
        url, r = self.routers[node_id]
        free, queued = r.free_slots(), r.queue_length()
        return PeerLoad(node_id, url, 0, r.capacity, free, queued, r.draining, {}, {}, 0.0)


def _tracked(send: SendForward, in_transit: dict[str, set[str]]) -> SendForward:
    async def send_forward(url: str, forward: ForwardRequest) -> InvokeResult:
        in_transit[url].add(forward.request.invocation_id)
        try:
            return await send(url, forward)
        finally:
            in_transit[url].discard(forward.request.invocation_id)

    return send_forward


@dataclass
class JoinShortestQueue:
    """With `ExactView`: run here while a slot is free, else the nearest peer with a free slot, else
    the least expected wait (queued work per slot), ties to the nearer. Never refused (forced)."""

    name: str = ORACLE
    pulls_work: ClassVar[bool] = False

    def decide(self, local: LocalState, peers: Peers, rng: random.Random) -> Decision:
        if local.free > 0:
            return LOCAL
        near = sorted(peers(), key=lambda c: c.rtt_s)
        free = [c for c in near if c.est_free >= 1]
        if free:
            return Decision(Kind.FORWARD, (free[0].node_id,))
        if not near:
            return LOCAL
        best = min(near, key=lambda c: ((c.est_queue + 1) / c.capacity, c.rtt_s))
        if (local.load + 1 - local.capacity) / local.capacity <= (best.est_queue + 1) / best.capacity:
            return LOCAL
        return Decision(Kind.FORWARD, (best.node_id,))

    def acceptable(self, answer: ProbeAnswer) -> bool:
        return False

    def after_probe(self, local: LocalState, answers: Sequence[ProbeAnswer], rng: random.Random) -> Decision:
        return LOCAL


def _function(root: Path) -> Path:
    directory = root / "echo"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.py").write_text("def handle(event):\n    return {'echo': event}\n")
    (directory / "p2pfaas.toml").write_text(
        'name = "echo"\nversion = "1.0.0"\nruntime = "python3.11"\nhandler = "main:handle"\n'
        "memory_mb = 64\ntimeout_s = 60.0\ndeterministic = false\n"
    )
    return directory


async def add_nodes(
    net: sim.InMemoryNetwork,
    stack: contextlib.AsyncExitStack,
    root: Path,
    anchor_url: str,
    *,
    count: int,
    sizes: tuple[int, ...],
    seed: int,
    rng: random.Random,
    **config: Any,
) -> tuple[list[NodeDaemon], list[ModelExecutor], int]:
    """`count` real daemons with modelled run time, sizes drawn from `sizes`; and their total slots."""
    daemons: list[NodeDaemon] = []
    executors: list[ModelExecutor] = []
    slots_total = 0
    for i in range(count):
        slots = rng.choice(sizes)
        slots_total += slots
        executor = ModelExecutor(rng=random.Random(f"{seed}/{i}"), slots=slots, mean_run_s=MEAN_RUN_S)
        node = await testbed.add_node(
            net, stack, anchor_url, root, i, seed=seed, executor=executor, slots=slots, queue_size=1000,
            **config,
        )  # fmt: skip
        daemons.append(node)
        executors.append(executor)
    return daemons, executors, slots_total


async def add_clients(
    net: sim.InMemoryNetwork,
    stack: contextlib.AsyncExitStack,
    root: Path,
    anchor_url: str,
    lessee: KeyPair,
    *,
    rate: float,
    seed: int,
    wallet: Callable[[random.Random], Wallet] | None = None,
) -> list[tuple[str, AsyncClient]]:
    """Lessee clients on their own hosts, enough for `rate`; the first deploys the function.

    One aiohttp session allows only 100 connections at once, which would queue requests in the
    client rather than in the network being measured: room for 4x the invocations in the system
    (rate x mean run time), and at least 10 hosts."""
    clients: list[tuple[str, AsyncClient]] = []
    for c in range(max(10, int(4 * rate * MEAN_RUN_S / CONNECTIONS_PER_CLIENT) + 1)):
        client_ip = net.add_host(f"10.2.0.{c + 1}")
        with net.on_host(client_ip):
            client = await stack.enter_async_context(
                AsyncClient(
                    anchor_url, lessee, rng=random.Random(f"{seed}/client/{c}"),
                    wallet=wallet(random.Random(f"{seed}/wallet/{c}")) if wallet else None,
                )
            )  # fmt: skip
            if c == 0:
                await client.deploy(_function(root))
            clients.append((client_ip, client))
    return clients


async def settle(net: sim.InMemoryNetwork, daemons: list[NodeDaemon]) -> None:
    """Nodes announce themselves, learn their neighbours, and gossip for 10 s: every view fills."""
    for node in daemons:
        with net.on_host(node.config.host):
            await node.announce()
    for node in daemons:
        with net.on_host(node.config.host):
            await node.placement.refresh_neighbours()
    await asyncio.sleep(10.0)


async def poisson_arrivals(
    net: sim.InMemoryNetwork,
    rng: random.Random,
    clients: list[tuple[str, AsyncClient]],
    *,
    rate: float,
    duration_s: float,
    start: Callable[[int, AsyncClient], Awaitable[None]],
    tick: Callable[[], None] = lambda: None,
) -> int:
    """Start invocation i with `start(i, client)` at Poisson times for `duration_s`, round-robin over
    the clients' hosts (`tick` runs before each); wait for all; return how many were started."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Future[None]] = []
    end = loop.time() + duration_s
    i = 0
    while loop.time() < end:
        tick()
        client_ip, client = clients[i % len(clients)]
        with net.on_host(client_ip):
            tasks.append(asyncio.ensure_future(start(i, client)))
        i += 1
        await asyncio.sleep(rng.expovariate(rate))
    await asyncio.gather(*tasks)
    return i


async def _scenario(
    net: sim.InMemoryNetwork,
    root: Path,
    *,
    nodes: int,
    duration_s: float,
    load: float,
    policy: str,
    seed: int,
    sizes: tuple[int, ...],
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    async with contextlib.AsyncExitStack() as stack:
        anchor = await testbed.add_anchor(net, stack, root)
        daemons, _, slots_total = await add_nodes(
            net, stack, root, anchor.url, count=nodes, sizes=sizes, seed=seed, rng=rng,
            placement="ours" if policy == ORACLE else policy,
        )  # fmt: skip
        if policy == ORACLE:
            everyone = {n.keys.key_id: (n.url, n.placement.router) for n in daemons}
            in_transit: dict[str, set[str]] = {n.url: set() for n in daemons}
            for n in daemons:
                exact = ExactView(self_id=n.keys.key_id, routers=everyone, in_transit=in_transit)
                exact._rtt_s = n.placement.view._rtt_s  # the RTTs gossip measures
                n.placement.router.view = exact
                n.placement.router.policy = JoinShortestQueue()
                n.placement.router.send_forward = _tracked(n.placement.router.send_forward, in_transit)
        rate = load * slots_total / MEAN_RUN_S
        clients = await add_clients(
            net, stack, root, anchor.url, KeyPair.from_seed(b"bench lessee"), rate=rate, seed=seed
        )
        await settle(net, daemons)
        times: list[float] = []
        warmup_until = loop.time() + duration_s / 4

        async def one(i: int, client: AsyncClient) -> None:
            started = loop.time()
            outcome = await client.invoke("echo", i)
            assert outcome.value == {"echo": i}
            if started >= warmup_until:
                times.append(loop.time() - started)

        wall = time.perf_counter()
        i = await poisson_arrivals(net, rng, clients, rate=rate, duration_s=duration_s, start=one)
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
            "pushes": sum(n.placement.room_pushes for n in daemons) / i,
            "pulled": sum(r.pulled for r in routers) / i,
            "pull_refused": sum(r.pull_refused for r in routers) / i,
            "slots": float(slots_total),
            "wall": wall,
        }


def parse_sizes(text: str) -> tuple[int, ...]:
    """`--sizes 1,2,4`: slots per node, positive whole numbers."""
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of slot counts") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("slot counts must be at least 1")
    return sizes


def _one(policy: str, args: argparse.Namespace) -> dict[str, float]:
    """One policy's run, in its own process when --jobs > 1 (each run is its own simulation)."""
    with tempfile.TemporaryDirectory(prefix="p2pbp-") as tmp:

        async def run(net: sim.InMemoryNetwork) -> dict[str, float]:
            return await _scenario(
                net, Path(tmp), nodes=args.nodes, duration_s=args.duration, load=args.load,
                policy=policy, seed=args.seed, sizes=args.sizes,
            )  # fmt: skip

        return sim.run(run, seed=args.seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0, help="virtual seconds of arrivals")
    parser.add_argument("--load", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--sizes", type=parse_sizes, default=(1, 2, 4, 8, 16), help="slots per node, drawn uniformly"
    )
    parser.add_argument("--jobs", type=int, default=1, help="policies run in parallel processes")
    parser.add_argument(
        "--policy", action="append", choices=[ORACLE, *POLICIES],
        help=f"default: {ORACLE}, ours, power-of-2, threshold-probe, nearest, random",
    )  # fmt: skip
    args = parser.parse_args()
    policies = args.policy or [ORACLE, "ours", "power-of-2", "threshold-probe", "nearest", "random"]
    print(
        f"{args.nodes} real nodes of {','.join(map(str, args.sizes))} slots on the in-memory network, "
        f"load {args.load:.0%}, "
        f"{args.duration:g} virtual s of arrivals (first quarter not measured), seed {args.seed}\n"
    )
    print(
        "| policy | invocations | p50 (ms) | p99 (ms) | p99 / oracle | probes/inv | room pushes/inv "
        "| forwards/inv | refused/inv | pulled/inv | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        futures = [pool.submit(_one, policy, args) for policy in policies]
        oracle_p99 = float("nan")
        for policy, future in zip(policies, futures, strict=True):  # printed in order, as they finish
            r = future.result()
            if policy == ORACLE:
                oracle_p99 = r["p99"]
            print(
                f"| {policy} | {r['invocations']:.0f} | {r['p50'] * 1000:.0f} | {r['p99'] * 1000:.0f} "
                f"| {r['p99'] / oracle_p99:.2f}x | {r['probes']:.2f} | {r['pushes']:.2f} "
                f"| {r['forwards']:.2f} | {r['refused']:.2f} | {r['pulled']:.2f} | {r['wall']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
