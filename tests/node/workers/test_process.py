"""One worker process of a node (`p2pfaas.node.workers.process`): a worker without a free slot hands
the invocation to the primary."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from p2pfaas import codec
from p2pfaas.messages import InvokeResult
from tests.functions import write_function
from tests.node.workers.conftest import Net, post, request_body


@pytest.mark.parametrize("executor_kind", ["process"], indirect=True)
async def test_a_worker_without_a_free_slot_hands_invocations_to_the_primary(net: Net) -> None:
    info = await net.client.deploy(write_function(net.root, "sleepy", timeout_s=10.0))
    url = f"{net.node.url}/v1/invoke"
    async with contextlib.AsyncExitStack() as stack:
        # Keep-alive connections that the kernel gave to the worker process: a request on one
        # does not count at the primary (whose counter is exact, in this process).
        on_worker: list[aiohttp.ClientSession] = []
        for _ in range(200):
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
            )
            before = net.node.service.stats.invocations
            await post(session, url, await request_body(net, info.header.digest, {"s": 0}))
            if net.node.service.stats.invocations == before:
                on_worker.append(session)
            if len(on_worker) == 3:
                break
        assert len(on_worker) == 3
        # Three at once on the worker, which has 2 slots; the primary has 2 free: it takes one.
        bodies = [await request_body(net, info.header.digest, {"s": 0.5}) for _ in range(3)]
        answers = await asyncio.gather(*(post(s, url, b) for s, b in zip(on_worker, bodies, strict=True)))
    assert all(codec.decode_as(InvokeResult, a).ok for a in answers)
    assert net.node.placement.router.stats.from_siblings == 1
