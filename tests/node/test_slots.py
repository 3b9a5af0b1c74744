"""`LocalSlots`: a slot is never given twice, waiters are served oldest first, and a waiter can leave."""

from __future__ import annotations

import asyncio

import pytest

from p2pfaas.errors import Busy
from p2pfaas.messages import InvokeRequest
from p2pfaas.node.slots import HandOff, LocalSlots


def request(invocation_id: str, *, timeout_s: float = 60.0) -> InvokeRequest:
    return InvokeRequest(invocation_id, "d" * 64, b"{}", timeout_s, None, bytes(32), bytes(64))


async def test_release_wakes_the_oldest_waiter_and_counts_it_running_at_once() -> None:
    slots = LocalSlots(capacity=lambda: 1)
    await slots.acquire(request("a"), 0)
    assert slots.running == 1
    order: list[str] = []

    async def wait(name: str) -> None:
        await slots.acquire(request(name), 0)
        order.append(name)

    waiters = [asyncio.create_task(wait(name)) for name in ("b", "c")]
    await asyncio.sleep(0)
    assert [q.request.invocation_id for q in slots.waiting] == ["b", "c"]
    slots.release()
    assert slots.running == 1  # b holds the slot a gave up, before b has even run
    for _ in range(10):  # a few loop turns: the waiter wakes through wait_for and shield
        await asyncio.sleep(0)
    assert order == ["b"]
    slots.release()
    await asyncio.gather(*waiters)
    assert order == ["b", "c"] and slots.running == 1 and not slots.waiting


async def test_a_handed_off_waiter_leaves_with_its_target() -> None:
    slots = LocalSlots(capacity=lambda: 1)
    await slots.acquire(request("a"), 0)
    near = asyncio.create_task(slots.acquire(request("b"), 0))
    far = asyncio.create_task(slots.acquire(request("c"), 2))
    await asyncio.sleep(0)
    assert slots.hand_off("peer", 5, max_hops=2) == 1  # c has no hop left
    with pytest.raises(HandOff) as left:
        await near
    assert left.value.target == "peer"
    assert [q.request.invocation_id for q in slots.take_all()] == ["c"]
    far.cancel()
    with pytest.raises(asyncio.CancelledError):
        await far
    assert slots.running == 1


async def test_a_wait_longer_than_the_request_allows_is_busy() -> None:
    slots = LocalSlots(capacity=lambda: 0)
    with pytest.raises(Busy, match="no slot became free"):
        await slots.acquire(request("a", timeout_s=0.01), 0)
    assert not slots.waiting and slots.running == 0
