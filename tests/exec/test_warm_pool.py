"""The real warm pool (through the process executor) following its policies on the loop's clock.

The learned keep-alive is shown on the simulator's virtual clock, so hours pass in a second; the
forecast on a real loop with one-second intervals. Real shim processes serve every invocation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.exec.base import FunctionSpec
from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.forecast import ArrivalForecast
from p2pfaas.exec.keepalive import FixedKeepAlive, HybridHistogramPolicy
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig
from p2pfaas.sim.clock import VirtualClockLoop

from .conftest import make_function

T = TypeVar("T")

THREADS_SOURCE = """
import os, threading, time

def main(request):
    time.sleep(request.get("s", 0))
    return [os.getpid(), threading.get_ident()]
"""


def on_virtual_clock(main: Callable[[], Awaitable[T]]) -> T:
    async def wrapped() -> T:
        return await main()

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(wrapped())


async def sleep_until(at: float) -> None:
    await asyncio.sleep(max(at - asyncio.get_running_loop().time(), 0))


def test_learned_keep_alive_scales_to_zero_then_prewarms_before_the_next_call(
    short_dir: Path, function: FunctionSpec
) -> None:
    period_s = 3600.0  # an hourly timer: a fixed 10-minute keep-alive starts it cold every time

    async def main() -> None:
        keep_alive = HybridHistogramPolicy(fallback_keep_alive_s=600, min_samples=5)
        executor = UnsandboxedProcessExecutor(
            work_dir=short_dir / "run", startup_timeout_s=1e5, keep_alive=keep_alive
        )
        await executor.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            colds = []
            for k in range(6):
                await sleep_until(t0 + k * period_s)
                result = await executor.invoke(function, b"{}", timeout_s=30)
                assert result.ok
                colds.append(result.cold)
                if k < 5:  # still learning: the fixed fallback keeps it ten minutes, then it goes
                    await sleep_until(t0 + k * period_s + 900)
                    assert executor.warm_digests() == {}
            assert colds == [True] * 6  # the sixth idle time is the fifth sample: learned now
            windows = keep_alive.windows(function.digest)
            assert windows.learned and 0.5 * period_s < windows.prewarm_s < period_s
            for k in range(6, 9):
                # Right after the call the instance is gone (scale to zero, not ten minutes)...
                await asyncio.sleep(60)
                assert executor.warm_digests() == {} and executor.instance_ids() == []
                # ...and shortly before the next one, it is back: pre-warmed.
                await sleep_until(t0 + k * period_s - 60)
                assert executor.warm_digests() == {function.digest: 1}
                result = await executor.invoke(function, b"{}", timeout_s=30)
                assert result.ok and not result.cold
        finally:
            await executor.aclose()

    on_virtual_clock(main)


async def test_forecast_prewarms_before_a_predicted_burst(short_dir: Path) -> None:
    """One-second intervals on the real loop. Calls ramp up (2, 4, 16 a second, one at a time, 50 ms
    each); the keep-alive is 50 ms, so only the forecast keeps instances. At the boundary the pool
    boots the second instance the trend asks for, before any call of the next second arrives."""
    fn = make_function(short_dir / "fn", source=THREADS_SOURCE)
    forecast = ArrivalForecast(interval_s=1.0, headroom=3.0)
    executor = UnsandboxedProcessExecutor(
        work_dir=short_dir / "run", max_per_function=4, keep_alive=FixedKeepAlive(0.05), forecast=forecast
    )
    await executor.start()
    loop = asyncio.get_running_loop()
    payload = json.dumps({"s": 0.05}).encode()
    try:
        t0 = (loop.time() // 1 + 1) * 1.0  # start on an interval boundary
        for second, calls in enumerate([2, 4, 16]):
            await sleep_until(t0 + second)
            for _ in range(calls):
                assert (await executor.invoke(fn, payload, timeout_s=30)).ok
        await sleep_until(t0 + 2.97)
        before = executor.warm_digests().get(fn.digest, 0)
        assert before == 1  # one call at a time needed one instance
        await sleep_until(t0 + 3.0)
        wanted = forecast.wanted(fn.digest, loop.time())
        assert wanted >= 2  # ~12 calls of 50 ms x headroom 3 expected in the coming second
        deadline = loop.time() + 30
        while executor.warm_digests().get(fn.digest, 0) < wanted:
            assert loop.time() < deadline, "the forecast's instances never booted"
            await asyncio.sleep(0.01)
        burst = await asyncio.gather(*(executor.invoke(fn, payload, timeout_s=30) for _ in range(wanted)))
        assert all(result.ok and not result.cold for result in burst)  # all found warm instances
    finally:
        await executor.aclose()


async def test_one_instance_serves_several_invocations_when_the_manifest_allows(short_dir: Path) -> None:
    fn = dataclasses.replace(make_function(short_dir / "fn", source=THREADS_SOURCE), concurrency=3)
    executor = UnsandboxedProcessExecutor(work_dir=short_dir / "run", max_per_function=1)
    await executor.start()
    try:
        payload = json.dumps({"s": 0.3}).encode()
        results = await asyncio.gather(*(executor.invoke(fn, payload, timeout_s=30) for _ in range(4)))
        assert all(result.ok for result in results)
        pids_threads = [json.loads(result.output) for result in results]
        assert len({pid for pid, _ in pids_threads}) == 1  # one process served all four
        assert len({thread for _, thread in pids_threads}) >= 3  # three ran side by side
        assert len(executor.instance_ids(fn.digest)) == 1
        assert sum(result.cold for result in results) == 3  # packed onto the booting instance
    finally:
        await executor.aclose()


async def test_placement_hooks_prewarm_report_and_release(short_dir: Path, function: FunctionSpec) -> None:
    executor = UnsandboxedProcessExecutor(work_dir=short_dir / "run", max_per_function=3, keep_alive_s=600)
    await executor.start()
    try:
        assert executor.warm_digests() == {}
        await executor.prewarm(function, 2)
        assert executor.warm_digests() == {function.digest: 2}
        await executor.prewarm(function, 5)  # capped by max_per_function
        assert executor.warm_digests() == {function.digest: 3}
        result = await executor.invoke(function, b"{}", timeout_s=30)
        assert result.ok and not result.cold
        executor.release(function.digest)
        assert executor.warm_digests() == {} and executor.instance_ids() == []
        assert (await executor.invoke(function, b"{}", timeout_s=30)).cold
    finally:
        await executor.aclose()


async def test_a_call_that_claims_a_prewarm_before_its_boot_task_runs_waits_for_it(
    short_dir: Path, function: FunctionSpec
) -> None:
    """The policy counts a pre-warmed instance as booting as soon as it decides it; a call arriving
    before the boot task has even started must wait for that boot, not fail on a missing record."""
    executor = UnsandboxedProcessExecutor(work_dir=short_dir / "run", max_per_function=1, keep_alive_s=600)
    await executor.start()
    try:
        prewarm = asyncio.ensure_future(executor.prewarm(function, 1))
        await asyncio.sleep(0)  # the pre-warm is decided and its boot task spawned, not yet run
        result = await executor.invoke(function, b"{}", timeout_s=30)
        await prewarm
        assert result.ok and result.cold  # it rode on the booting instance
        assert executor.warm_digests() == {function.digest: 1}
    finally:
        await executor.aclose()


@pytest.mark.docker
async def test_one_container_serves_several_invocations(runtime_image: str, short_dir: Path) -> None:
    base = make_function(short_dir / "fn", source=THREADS_SOURCE)
    fn = dataclasses.replace(base, concurrency=2)
    executor = DockerExecutor(
        owner_id=f"test-{uuid.uuid4().hex[:12]}", work_dir=short_dir / "run", image=runtime_image
    )
    await executor.start()
    try:
        payload = json.dumps({"s": 0.3}).encode()
        results = await asyncio.gather(*(executor.invoke(fn, payload, timeout_s=30) for _ in range(2)))
        assert all(result.ok for result in results)
        assert len({json.loads(result.output)[1] for result in results}) == 2  # two threads at once
        assert len(executor.instance_ids(fn.digest)) == 1
        assert executor.warm_digests() == {fn.digest: 1}
    finally:
        await executor.aclose()


async def test_a_node_runs_a_manifests_concurrency_in_one_instance(tmp_path: Path) -> None:
    """End to end: `concurrency = 3` in p2pfaas.toml, deployed, invoked three at once through a node."""
    fn_dir = tmp_path / "threads"
    fn_dir.mkdir()
    (fn_dir / "main.py").write_text(THREADS_SOURCE)
    (fn_dir / "p2pfaas.toml").write_text(
        'name = "threads"\nversion = "1"\nhandler = "main:main"\nmemory_mb = 128\nconcurrency = 3\n'
    )
    run_dir = Path(tempfile.mkdtemp(prefix="p2pw-", dir="/tmp"))  # unix socket paths are short
    try:
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}", port=0) as anchor,
            AsyncClient(anchor.url, KeyPair.generate()) as client,
        ):
            info = await client.deploy(fn_dir)
            assert info.header.manifest.concurrency == 3
            config = NodeConfig(
                unpaid_owners=True,  # among friends: owners run their own functions unpaid
                anchor_url=anchor.url,
                key_path=tmp_path / "node" / "node.key",
                work_dir=tmp_path / "node",
                executor="process",
                allow_unsandboxed=True,
                announce_interval_s=3600,
            )
            executor = UnsandboxedProcessExecutor(work_dir=run_dir)
            async with NodeDaemon(config, executor=executor) as node:
                await node.announce()
                outcomes = await asyncio.gather(
                    *(client.invoke("threads", {"s": 1.0}, node_url=node.url) for _ in range(3))
                )
                assert len({pid for pid, _ in (o.value for o in outcomes)}) == 1
                assert len({thread for _, thread in (o.value for o in outcomes)}) == 3
                assert executor.warm_digests() == {info.header.digest: 1}
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
