"""`AsyncExecutor`, the network as asyncio tasks, against a real anchor and two real nodes on 127.0.0.1:
tasks, an in-order lazy `map` over plain and async inputs, callables packed once, no retry of a
function that failed, and shutdown that waits or cancels."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient, AsyncExecutor
from p2pfaas.errors import FunctionFailed, InvokeTimeout, LocalError
from p2pfaas.identity import KeyPair
from tests.client.clientkit import node_daemon
from tests.functions import write_function


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[AsyncClient]:
    run_dir = Path(tempfile.mkdtemp(prefix="p2pa-", dir="/tmp"))
    try:
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor,
            node_daemon(anchor.url, tmp_path, "a", run_dir) as a,
            node_daemon(anchor.url, tmp_path, "b", run_dir) as b,
            AsyncClient(anchor.url, KeyPair.generate(), rng=random.Random(4)) as c,
        ):
            await a.announce()
            await b.announce()
            for kind in ("echo", "boom"):
                await c.deploy(write_function(tmp_path, kind))
            await c.deploy(write_function(tmp_path, "sleepy", timeout_s=0.5))
            yield c
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


async def test_tasks_and_an_in_order_lazy_map_over_plain_and_async_inputs(client: AsyncClient) -> None:
    async with AsyncExecutor(client, max_in_flight=3) as pool:
        outcomes = await asyncio.gather(*(pool.submit("echo", {"n": n}) for n in range(6)))
        assert [o.value["echo"]["n"] for o in outcomes] == list(range(6))
        consumed: list[int] = []

        async def payloads() -> AsyncIterator[int]:
            for i in range(20):
                consumed.append(i)
                yield i

        results = pool.map("echo", payloads(), chunksize=2)
        first = await anext(results)
        assert first.value == {"echo": 0} and len(consumed) <= 3 + 2  # the window and a chunk ahead
        assert [o.value["echo"] async for o in results] == list(range(1, 20))
        assert [o.value["echo"] async for o in pool.map("echo", range(4), [9] * 4)] == [
            [i, 9] for i in range(4)
        ]
        assert pool.attempts == 6 + 20 + 4
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit("echo", 1)


async def test_a_callable_runs_packed_once_and_a_failed_function_is_never_retried(
    client: AsyncClient,
) -> None:
    offset = 100

    def shifted(x: int, *, times: int = 1) -> int:
        return (x + offset) * times

    async with AsyncExecutor(client, retries=2, backoff_s=0.01) as pool:
        assert await asyncio.gather(*(pool.submit(shifted, i, times=2) for i in range(8))) == [
            (i + 100) * 2 for i in range(8)
        ]
        assert [v async for v in pool.map(lambda a, b: a * b, range(4), range(4))] == [0, 1, 4, 9]
        assert len(await client.versions("py-shifted")) == 1
        attempts = pool.attempts
        with pytest.raises(FunctionFailed, match="bad input") as failed:
            await pool.submit("boom", 7)
        assert pool.attempts == attempts + 1 and isinstance(failed.value.logs, str)
        with pytest.raises(InvokeTimeout):
            await pool.submit("sleepy", {"s": 5})
        assert pool.attempts == attempts + 1 + 3  # the first try and two retries
        with pytest.raises(LocalError, match="one payload"):
            pool.submit("echo", 1, 2)


async def test_shutdown_can_cancel_what_has_not_run(client: AsyncClient) -> None:
    pool = AsyncExecutor(client, max_in_flight=1)
    tasks = [pool.submit("echo", i) for i in range(10)]
    await asyncio.sleep(0)
    await pool.shutdown(cancel_futures=True)
    assert all(t.done() for t in tasks) and any(t.cancelled() for t in tasks)
    assert all(t.result().value == {"echo": i} for i, t in enumerate(tasks) if not t.cancelled())
