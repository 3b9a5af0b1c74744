"""Cold start vs Docker (issue #4): the first invocation of a new function, (a) on the Docker
executor directly and (b) through a node (POST /v1/invoke; includes fetching the bundle from the
anchor and verifying it), against Docker's own create+start of the same container (its config copied
from the executor's container: same image, command, limits, mounts), interleaved one of each per
round. Also shown: create+start until the shim answers (Docker plus the Python runtime's start).

A benchmark, not a test: it asserts no figure. Wall time is `time.perf_counter`.

    .venv/bin/python -m bench.bench_coldstart [--n 15]
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
from typing import Any

import aiohttp

from bench.execkit import PAYLOAD, node_process, signed_requests, write_function
from bench.loadgen import pct
from p2pfaas import codec
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.exec.base import FunctionSpec
from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.shim_client import ShimConnection
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeResult


def docker_create_start(client: Any, template: dict[str, Any], socket_dir: Path) -> tuple[Any, float]:
    """Create and start a copy of `template` (an inspected container) with its own socket dir."""
    host_config = dict(template["HostConfig"])
    host_config["Binds"] = [
        f"{socket_dir}:{bind.split(':')[1]}:rw" if bind.split(":")[1].startswith("/run") else bind
        for bind in host_config["Binds"]
    ]
    config = template["Config"]
    started = time.perf_counter()
    created = client.api.create_container(
        config["Image"],
        command=config["Cmd"],
        user=config["User"],
        host_config=host_config,
        labels={"p2pfaas.bench": "baseline"},
    )
    client.api.start(created["Id"])
    return created["Id"], time.perf_counter() - started


async def coldstart(args: argparse.Namespace) -> None:
    import docker

    from p2pfaas.exec.runtime_image import RUNTIME_IMAGE_TAG

    docker_client = docker.from_env()
    root = Path(tempfile.mkdtemp(prefix="bcs-", dir="/tmp"))
    keys = KeyPair.generate()
    samples: dict[str, list[float]] = {"docker": [], "docker_ready": [], "executor": [], "node": []}
    executor = DockerExecutor(owner_id="bench-cold", work_dir=root / "run", image=RUNTIME_IMAGE_TAG)
    await executor.start()
    try:
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{root / 'anchor.db'}", port=0) as anchor,
            AsyncClient(anchor.url, keys) as client,
            node_process(anchor.url, root / "node", slots=4) as (_, url),
            aiohttp.ClientSession() as session,
        ):
            for _ in range(100):
                if url in [n.url for n in await client.nodes(refresh=True)]:
                    break
                await asyncio.sleep(0.05)
            template: dict[str, Any] = {}

            async def executor_cold(i: int) -> float:
                """(a) the executor's cold start of a new function."""
                code = root / f"fn{i}"
                shutil.copytree(root / "src" / f"fn{i}", code)
                spec = FunctionSpec(
                    digest=f"{i:064x}", code_dir=code, handler="main:handle", memory_mb=64, timeout_s=5
                )
                t0 = time.perf_counter()
                result = await executor.invoke(spec, PAYLOAD, timeout_s=30)
                elapsed_s = time.perf_counter() - t0
                assert result.ok and result.cold
                if not template:  # the config Docker's own create+start copies
                    [instance_id] = executor.instance_ids(spec.digest)
                    inspect = docker_client.api.inspect_container
                    template.update(await asyncio.to_thread(inspect, executor.container_id(instance_id)))
                return elapsed_s

            async def docker_cold(i: int) -> tuple[float, float]:
                """Docker's own create+start of the same container, and until its shim answers."""
                socket_dir = root / f"s{i}"
                socket_dir.mkdir(mode=0o777)
                socket_dir.chmod(0o777)
                t0 = time.perf_counter()
                baseline_id, docker_s = await asyncio.to_thread(
                    docker_create_start, docker_client, template, socket_dir
                )
                connection = None
                while connection is None:
                    try:
                        connection = await ShimConnection.open(socket_dir / "shim.sock", timeout_s=1)
                    except Exception:
                        await asyncio.sleep(0.001)
                ready_s = time.perf_counter() - t0
                await connection.aclose()
                await asyncio.to_thread(docker_client.api.remove_container, baseline_id, force=True)
                return docker_s, ready_s

            async def node_cold(i: int) -> float:
                """(b) through the node: a function it has never seen (fetch, verify, extract, start)."""
                info = await client.deploy(root / "src" / f"fn{i}")
                body = signed_requests(keys, info.header.digest, 1, f"cold{i}")[0]
                t0 = time.perf_counter()
                async with session.post(f"{url}/v1/invoke", data=body) as rsp:
                    answer = codec.decode_as(InvokeResult, await rsp.read())
                elapsed_s = time.perf_counter() - t0
                assert answer.ok and answer.cold, answer
                return elapsed_s

            for i in range(args.n + 1):  # round 0 warms caches (image layers, imports) and is dropped
                write_function(root / "src", f"fn{i}")
                # The order rotates, so that whatever one start leaves behind hits each path alike.
                if i % 3 == 0:
                    executor_s = await executor_cold(i)
                    docker_s, ready_s = await docker_cold(i)
                    node_s = await node_cold(i)
                elif i % 3 == 1:
                    docker_s, ready_s = await docker_cold(i)
                    node_s = await node_cold(i)
                    executor_s = await executor_cold(i)
                else:
                    node_s = await node_cold(i)
                    executor_s = await executor_cold(i)
                    docker_s, ready_s = await docker_cold(i)
                if i:
                    samples["docker"].append(docker_s)
                    samples["docker_ready"].append(ready_s)
                    samples["executor"].append(executor_s)
                    samples["node"].append(node_s)
    finally:
        await executor.aclose()
        for leftover in docker_client.containers.list(all=True, filters={"label": "p2pfaas.bench"}):
            leftover.remove(force=True)
        docker_client.close()
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(samples["docker"])
    load = os.getloadavg()[0]
    print(f"cold start of a new no-op function, n = {args.n}, load average {load:.1f} (ms; +p50 over Docker)")
    print(f"{'path':<62} {'p50':>7} {'p90':>7} {'+p50':>7}")
    print("-" * 86)
    labels = {
        "docker": "Docker create+start of the same container (baseline)",
        "docker_ready": "Docker create+start until its shim answers (no invoke)",
        "executor": "(a) DockerExecutor.invoke, first call of a new function",
        "node": "(b) node: POST /v1/invoke, function new to the node",
    }
    for key, label in labels.items():
        s = sorted(samples[key])
        print(
            f"{label:<62} {statistics.median(s) * 1e3:>7.1f} {pct(s, 0.9) * 1e3:>7.1f} "
            f"{(statistics.median(s) - base) * 1e3:>+7.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=15)
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(coldstart(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
