"""Execution engine figures (issue #4): warm throughput through one node, and cold start vs Docker.

**throughput**: one node runs as its own process (`p2pfaas node run --executor docker`, uvloop), a
no-op function (`def handle(e): return e`) deployed and warm. Load processes (each its own uvloop
loop) keep C requests in flight on keep-alive connections for a fixed time (a lean HTTP/1.1
client by default, as they share the cores with the node; `--client aiohttp` for aiohttp's), each
request a distinct pre-signed `InvokeRequest` (signing is the lessee's cost, done before the clock
starts); every answer is decoded and checked (HTTP 200, `ok`, the echoed payload), and one in 50
has its signature verified. Baseline in the same run: the same load against an aiohttp echo server
process (the HTTP ceiling of this machine with this client) and the node process's CPU per
invocation. Each `--workers` value is its own node, measured in the same run; the ratio column is
to the one-process node at the same load.

**coldstart** (bench/bench_coldstart.py, also its own command): the first invocation of a new
function against Docker's own create+start of the same container.

The load generator is bench/loadgen.py; the function, the node process and the CPU counters are
bench/execkit.py.

A benchmark, not a test: it asserts no figure. Wall time is `time.perf_counter`.

    .venv/bin/python -m bench.bench_exec throughput [--seconds 5] [--clients 1,8,32,64] [--procs 2]
        [--client lean|aiohttp] [--workers 1,2] [--metrics on|off|off,on]
    .venv/bin/python -m bench.bench_exec coldstart [--n 15]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

from bench.bench_coldstart import coldstart
from bench.execkit import (
    containers_cpu_ns,
    cpu_ticks,
    echo_process,
    free_port,
    node_process,
    signed_requests,
    wait_for_port,
    write_function,
)
from bench.loadgen import Row, run_load
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.identity import KeyPair


def requests_needed(seconds: float) -> int:
    """Pre-signed requests per level: more than a node answers (the echo server reuses them)."""
    return int(seconds * 12000) + 2000


async def throughput(args: argparse.Namespace) -> None:
    levels = [int(c) for c in args.clients.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    metric_modes = [m == "on" for m in args.metrics.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bex-", dir="/tmp"))
    keys = KeyPair.generate()
    needed = requests_needed(args.seconds)
    rows: dict[tuple[int, bool, int], Row] = {}  # (worker processes, metrics, clients) -> the node's row
    echo_rows: dict[int, Row] = {}
    try:
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{root / 'anchor.db'}", port=0) as anchor,
            AsyncClient(anchor.url, keys) as client,
        ):
            info = await client.deploy(write_function(root, "noop"))
            echo_port = free_port()
            ctx = multiprocessing.get_context("spawn")
            echo_server = ctx.Process(target=echo_process, args=(echo_port,), daemon=True)
            echo_server.start()
            await wait_for_port(echo_port)
            for level in levels:
                bodies = signed_requests(keys, info.header.digest, needed, f"echo{level}")
                echo_rows[level] = await _level(args, f"http://127.0.0.1:{echo_port}/echo", bodies, level)
            echo_server.terminate()
            echo_server.join()
            for workers, metrics in itertools.product(worker_counts, metric_modes):
                for level, row in (
                    await _node_levels(
                        args, anchor.url, client, info.header.digest, keys, root, workers, levels, metrics
                    )
                ).items():
                    rows[workers, metrics, level] = row
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"warm no-op through one node: {args.seconds:g} s per level, {args.procs} load processes, "
        f"{os.cpu_count()} cores, node slots {args.slots}, {args.client} client, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'workers':>7} {'metrics':>7} {'clients':>7} {'node inv/s':>10} {'vs 1 worker':>11} "
        f"{'vs no metrics':>13} {'err':>3} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'CPU us/inv: node':>16} {'shim':>5} {'client':>6} {'2-core bound/s':>14} "
        f"{'echo req/s':>10}"
    )
    print(header)
    print("-" * len(header))
    for (workers, metrics, level), node in rows.items():
        # What 2 cores could answer if all they did was this: node + containers + load generator.
        bound = 2e6 / (node.node_cpu_us + node.shim_cpu_us + node.client_cpu_us)
        one, off = rows.get((1, metrics, level)), rows.get((workers, False, level))
        ratio = f"{node.per_s / one.per_s:.2f}x" if one is not None and one.per_s > 0 else "-"
        vs_off = f"{node.per_s / off.per_s:.3f}x" if off is not None and off.per_s > 0 else "-"
        print(
            f"{workers:>7} {'on' if metrics else 'off':>7} {node.clients:>7} {node.per_s:>10.0f} "
            f"{ratio:>11} {vs_off:>13} {node.errors:>3} "
            f"{node.p50_s * 1e3:>7.2f} {node.p99_s * 1e3:>7.2f} {node.node_cpu_us:>16.0f} "
            f"{node.shim_cpu_us:>5.0f} {node.client_cpu_us:>6.0f} {bound:>14.0f} "
            f"{echo_rows[level].per_s:>10.0f}"
        )


async def _level(
    args: argparse.Namespace, url: str, bodies: list[bytes], clients: int, *, check_node: bool = False
) -> Row:
    """One load level against `url`, with the run's load processes, duration and client."""
    return await asyncio.to_thread(
        run_load,
        url,
        bodies,
        clients=clients,
        procs=args.procs,
        seconds=args.seconds,
        check_node=check_node,
        client=args.client,
    )


async def _node_levels(
    args: argparse.Namespace,
    anchor_url: str,
    client: AsyncClient,
    digest: str,
    keys: KeyPair,
    root: Path,
    workers: int,
    levels: list[int],
    metrics: bool = True,
) -> dict[int, Row]:
    """One node process with `workers` worker processes, loaded at each level in turn."""
    needed = requests_needed(args.seconds)
    work_dir = root / f"node-{workers}-{'m' if metrics else 'n'}"
    owner = KeyPair.load_or_create(work_dir / "node.key").key_id
    rows: dict[int, Row] = {}
    async with node_process(anchor_url, work_dir, args.slots, workers, metrics=metrics) as (pid, url):
        for _ in range(100):  # the node announces itself to the anchor just after it binds
            if url in [n.url for n in await client.nodes(refresh=True)]:
                break
            await asyncio.sleep(0.05)
        for _ in range(8 * (workers - 1) + 1):  # warm every worker process: each on a new connection
            async with AsyncClient(anchor_url, keys) as fresh:
                warm = await fresh.invoke("noop", {"n": 1}, node_url=url)
            assert warm.value == {"n": 1}
        for level in levels:
            bodies = signed_requests(keys, digest, needed, f"w{workers}c{level}m{metrics:d}")
            ticks, shim_ns = cpu_ticks(pid), containers_cpu_ns(owner)
            node = await _level(args, f"{url}/v1/invoke", bodies, level, check_node=True)
            used_s = (cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK")
            answered = max(node.per_s * args.seconds, 1)
            node.node_cpu_us = used_s / answered * 1e6
            node.shim_cpu_us = (containers_cpu_ns(owner) - shim_ns) / answered / 1e3
            rows[level] = node
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--seconds", type=float, default=5.0)
    tp.add_argument("--clients", default="1,8,32,64")
    tp.add_argument("--procs", type=int, default=2, help="load-generating processes")
    tp.add_argument("--slots", type=int, default=8, help="the node's --slots")
    tp.add_argument(
        "--metrics", default="on", choices=("on", "off", "on,off", "off,on"),
        help="the node's /metrics figures recorded or not (--no-metrics); both: one node each",
    )  # fmt: skip
    tp.add_argument(
        "--workers", default="1,2", help="the node's --workers (processes on its port), one node per value"
    )
    tp.add_argument(
        "--client", choices=("lean", "aiohttp"), default="lean", help="the load processes' HTTP client"
    )
    cs = sub.add_parser("coldstart")
    cs.add_argument("--n", type=int, default=15)
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(throughput(args) if args.what == "throughput" else coldstart(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
