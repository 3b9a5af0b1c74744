"""First calls of a numpy function on a node without its dependency layer, with it, and warm (issue #16).

Starts an anchor (SQLite in a temporary directory) on loopback and deploys three functions: `plain`
(standard library only: the baseline), and `np-a` and `np-b`, which both need numpy (one lock, so
one layer). Each round starts a fresh node (empty caches) and, pinned to it, times:

- plain, first call: fetch the bundle, cold start (the baseline of a first call);
- np-a, first call: the same plus fetching numpy's wheel from the anchor, checking its hash,
  unpacking it, and importing numpy;
- np-b, first call: its layer is already on the node (np-a's): only the bundle, a cold start and
  the import;
- np-a and plain, warm: the median of W calls each.

and counts the wheel bytes the node fetched (once per node, whatever the number of functions that
share the layer). Rounds interleave nothing: each node is new. It prints medians, p99 (of the
rounds) and the ratio to the baseline measured in the same run. A benchmark, not a test.

    .venv/bin/python -m bench.bench_layers [--rounds 5] [--warm 50] [--executor process|docker]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.bundle.lock import read_lock
from p2pfaas.client import AsyncClient
from p2pfaas.exec.base import Executor
from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig

NUMPY = (
    "import numpy as np\n"
    "def handle(event):\n"
    "    return {'sum': int(np.arange(event['n']).sum()), 'tag': TAG}\n"
)
PLAIN = "def handle(event):\n    return {'sum': sum(range(event['n'])), 'tag': TAG}\n"


def function(root: Path, name: str, code: str, *, requirements: str = "") -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "p2pfaas.toml").write_text(
        f'name = "{name}"\nversion = "1"\nhandler = "main:handle"\nmemory_mb = 256\n'
        f"timeout_s = 30\n{requirements}"
    )
    (directory / "main.py").write_text(f"TAG = {name!r}\n{code}")
    return directory


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def timed(client: AsyncClient, name: str, url: str) -> float:
    started = time.perf_counter()
    outcome = await client.invoke(name, {"n": 10}, node_url=url)
    elapsed = time.perf_counter() - started
    assert outcome.value == {"sum": 45, "tag": name}, outcome.value
    return elapsed


async def main(rounds: int, warm: int, executor_kind: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="p2pb-layers-", dir="/tmp"))
    os.environ.setdefault("P2PFAAS_WHEEL_CACHE", str(root / "wheels"))
    samples: dict[str, list[float]] = {
        k: [] for k in ("plain cold", "np-a cold", "np-b cold", "plain warm", "np-a warm")
    }
    fetched: list[int] = []
    try:
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{root / 'anchor.db'}", port=0) as anchor,
            AsyncClient(anchor.url, KeyPair.generate()) as client,
        ):
            requirements = 'requirements = ["numpy>=1.26"]\n'
            await client.deploy(function(root / "fn", "plain", PLAIN))
            await client.deploy(function(root / "fn", "np-a", NUMPY, requirements=requirements))
            await client.deploy(function(root / "fn", "np-b", NUMPY, requirements=requirements))
            lock = read_lock(root / "fn" / "np-a")
            assert lock is not None
            for r in range(rounds):
                work = root / f"node{r}"
                config = NodeConfig(
                    unpaid_owners=True, anchor_url=anchor.url, key_path=work / "node.key", work_dir=work,
                    port=0, executor=executor_kind, allow_unsandboxed=True, memory_mb=2048, slots=4,
                )  # fmt: skip
                run_dir = Path(tempfile.mkdtemp(prefix="p2pbl-", dir="/tmp"))
                executor: Executor
                if executor_kind == "docker":
                    executor = DockerExecutor(
                        owner_id=KeyPair.load_or_create(config.key_path).key_id, work_dir=run_dir
                    )
                else:
                    executor = UnsandboxedProcessExecutor(work_dir=run_dir)
                async with NodeDaemon(config, executor=executor) as node:
                    await node.announce()
                    await client.nodes(refresh=True)
                    url = node.url
                    samples["plain cold"].append(await timed(client, "plain", url))
                    samples["np-a cold"].append(await timed(client, "np-a", url))
                    samples["np-b cold"].append(await timed(client, "np-b", url))
                    plain = [await timed(client, "plain", url) for _ in range(warm)]
                    numpy_warm = [await timed(client, "np-a", url) for _ in range(warm)]
                    samples["plain warm"].append(statistics.median(plain))
                    samples["np-a warm"].append(statistics.median(numpy_warm))
                    assert node.service is not None and node.service.layers is not None
                    fetched.append(node.service.layers.fetched_bytes)
                shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nnumpy layer: {len(lock.wheels)} wheel(s), {lock.size / 2**20:.1f} MiB; executor "
        f"{executor_kind}; {rounds} fresh nodes, {warm} warm calls each"
    )
    print(f"{'path':<34}{'median ms':>11}{'p99 ms':>10}{'x baseline':>12}")
    baselines = {
        "cold": statistics.median(samples["plain cold"]),
        "warm": statistics.median(samples["plain warm"]),
    }
    labels = {
        "plain cold": "plain, first call (baseline)",
        "np-a cold": "numpy, first call, layer fetched",
        "np-b cold": "numpy, first call, layer cached",
        "plain warm": "plain, warm (baseline)",
        "np-a warm": "numpy, warm",
    }
    for key, label in labels.items():
        median = statistics.median(samples[key])
        ratio = median / baselines[key.split()[1]]
        print(f"{label:<34}{median * 1000:>11.1f}{p99(samples[key]) * 1000:>10.1f}{ratio:>11.2f}x")
    print(f"wheel bytes fetched per node: {sorted(set(fetched))} (the layer is {lock.size}: once per node)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument("--executor", choices=("process", "docker"), default="process")
    options = parser.parse_args()
    asyncio.run(main(options.rounds, options.warm, options.executor))
