"""`Executor.map` and `AsyncExecutor.map` against a hand-written AsyncClient pipeline, on a 3-node
network (issue #16).

Starts an anchor (SQLite in a temporary directory) and three nodes (process executor) on loopback,
deploys a no-op function, warms it on every node, then runs N calls along each path, alternating
the two paths in R rounds so machine noise hits both alike:

- baseline: one `AsyncClient`, `asyncio.gather` of N `invoke`s under a semaphore of W (what a user
  would write by hand);
- Executor.map: `p2pfaas.client.Executor(Client(...), max_in_flight=W).map("noop", range(N))`, from
  the calling thread, results consumed in order;
- AsyncExecutor.map: `async for` over `AsyncExecutor(async_client, max_in_flight=W).map(...)` on the
  client's loop, results in order.

It prints calls/s (median over rounds, and the worst round), the ratio to the baseline, and the
client's CPU per call (`time.process_time` of this process, which also runs the nodes' event loops:
compare the two paths, not the absolute figure). A benchmark, not a test.

    .venv/bin/python -m bench.bench_executor [--calls 10000] [--rounds 3] [--window 64]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient, AsyncExecutor, Client, Executor
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig

HANDLER = "def handle(e):\n    return e\n"


def noop(root: Path) -> Path:
    directory = root / "noop"
    directory.mkdir(parents=True)
    (directory / "p2pfaas.toml").write_text('name = "noop"\nversion = "1"\nhandler = "main:handle"\n')
    (directory / "main.py").write_text(HANDLER)
    return directory


class Network:
    """An anchor and three nodes on a loop of their own, in a thread (the Executor's caller is sync)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.anchor_url = ""
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),))

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with AsyncExitStack() as stack:
            anchor = await stack.enter_async_context(
                AnchorServer(f"sqlite+aiosqlite:///{self.root / 'anchor.db'}", port=0)
            )
            for i in range(3):
                work = self.root / f"node{i}"
                config = NodeConfig(
                    unpaid_owners=True, anchor_url=anchor.url, key_path=work / "node.key", work_dir=work,
                    port=0, executor="process", allow_unsandboxed=True, slots=8, queue_size=256,
                )  # fmt: skip
                run_dir = Path(tempfile.mkdtemp(prefix=f"p2pbe{i}-", dir="/tmp"))
                stack.callback(shutil.rmtree, run_dir, True)
                node = await stack.enter_async_context(
                    NodeDaemon(config, executor=UnsandboxedProcessExecutor(work_dir=run_dir))
                )
                await node.announce()
            self.anchor_url = anchor.url
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> Network:
        self.thread.start()
        if not self.ready.wait(120):
            raise RuntimeError("the network did not start")
        return self

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(60)
        self.loop.close()


def baseline(client: Client, calls: int, window: int) -> None:
    async def run() -> None:
        gate = asyncio.Semaphore(window)
        async_client: AsyncClient = client.async_client

        async def one(i: int) -> None:
            async with gate:
                assert (await async_client.invoke("noop", i)).value == i

        await asyncio.gather(*(one(i) for i in range(calls)))

    client.spawn(run()).result()


def with_executor(client: Client, calls: int, window: int) -> None:
    with Executor(client, max_in_flight=window) as pool:
        results: Iterator[object] = (o.value for o in pool.map("noop", range(calls)))
        for i, value in enumerate(results):
            assert value == i


def with_async_executor(client: Client, calls: int, window: int) -> None:
    async def run() -> None:
        async with AsyncExecutor(client.async_client, max_in_flight=window) as pool:
            i = 0
            async for outcome in pool.map("noop", range(calls)):
                assert outcome.value == i
                i += 1

    client.spawn(run()).result()


def main(calls: int, rounds: int, window: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="p2pb-executor-", dir="/tmp"))
    rates: dict[str, list[float]] = {
        "baseline: AsyncClient + gather": [],
        "Executor.map": [],
        "AsyncExecutor.map": [],
    }
    cpu: dict[str, list[float]] = {k: [] for k in rates}
    try:
        with Network(root) as network, Client(network.anchor_url, KeyPair.generate()) as client:
            client.deploy(noop(root))
            baseline(client, 300, window)  # warm every node
            paths = list(zip(rates, (baseline, with_executor, with_async_executor), strict=True))
            for r in range(rounds):
                for label, path in paths if r % 2 == 0 else reversed(paths):
                    wall, used = time.perf_counter(), time.process_time()
                    path(client, calls, window)
                    rates[label].append(calls / (time.perf_counter() - wall))
                    cpu[label].append((time.process_time() - used) / calls)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(rates["baseline: AsyncClient + gather"])
    print(f"\n{calls} no-op calls per path and round, {rounds} rounds, window {window}, 3 process nodes")
    print(f"{'path':<34}{'calls/s median':>15}{'worst round':>13}{'x baseline':>12}{'CPU us/call':>13}")
    for label in rates:
        median = statistics.median(rates[label])
        print(
            f"{label:<34}{median:>15.0f}{min(rates[label]):>13.0f}{median / base:>11.2f}x"
            f"{statistics.median(cpu[label]) * 1e6:>13.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=64)
    options = parser.parse_args()
    main(options.calls, options.rounds, options.window)
