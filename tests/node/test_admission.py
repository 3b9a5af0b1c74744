"""Admission: the slot and memory accounting core, and the bounded FIFO queue in front of it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.errors import Busy, ConfigError, Refused
from p2pfaas.node.admission import Admission, Capacity, Limits, peer_with_room

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ConfigError):
        Limits(slots=0)
    with pytest.raises(ConfigError):
        Limits(memory_mb=1)
    with pytest.raises(ConfigError):
        Limits(queue_size=-1)


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 600)), max_size=60))
def test_capacity_never_exceeds_its_limits(ops: list[tuple[bool, int]]) -> None:
    capacity = Capacity(Limits(slots=3, memory_mb=1000))
    held: list[int] = []
    for take, memory_mb in ops:
        if take and capacity.has_room(memory_mb):
            capacity.take(memory_mb)
            held.append(memory_mb)
        elif not take and held:
            capacity.give_back(held.pop(0))
        assert 0 <= capacity.slots_used <= 3 and 0 <= capacity.memory_used_mb <= 1000
        assert capacity.slots_used == len(held) and capacity.memory_used_mb == sum(held)


async def test_runs_at_once_while_there_is_room() -> None:
    admission = Admission(Limits(slots=2, memory_mb=256))
    async with admission.slot(DIGEST_A, 128, timeout_s=1):
        assert admission.free_slots() == 1 and admission.has_room(128) and not admission.has_room(129)
        assert admission.running_digests() == [DIGEST_A]
    assert admission.free_slots() == 2 and admission.running_digests() == []


async def test_memory_bounds_concurrency_as_well_as_slots() -> None:
    admission = Admission(Limits(slots=8, memory_mb=256, queue_size=0))
    async with admission.slot(DIGEST_A, 200, timeout_s=1):
        with pytest.raises(Busy, match="queue is full"):
            async with admission.slot(DIGEST_B, 100, timeout_s=1):
                pass
        async with admission.slot(DIGEST_B, 56, timeout_s=1):
            assert admission.capacity.memory_used_mb == 256


async def test_more_memory_than_the_node_lends_is_refused_not_queued() -> None:
    admission = Admission(Limits(slots=1, memory_mb=256))
    with pytest.raises(Refused, match="lends 256 MB") as caught:
        async with admission.slot(DIGEST_A, 512, timeout_s=1):
            pass
    assert caught.value.status == 413 and not isinstance(caught.value, Busy)


async def test_waiters_run_in_arrival_order_when_slots_free() -> None:
    admission = Admission(Limits(slots=1, memory_mb=1024, queue_size=4))
    order: list[str] = []
    release = asyncio.Event()

    async def run(name: str, digest: str) -> None:
        async with admission.slot(digest, 64, timeout_s=10):
            order.append(name)
            await release.wait()

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(run("first", DIGEST_A))
        await asyncio.sleep(0)
        for name in ("second", "third"):
            tasks.create_task(run(name, DIGEST_B))
            await asyncio.sleep(0)
        assert admission.queue_length() == 2 and admission.queue_length(DIGEST_B) == 2
        assert admission.queue_length(DIGEST_A) == 0 and not admission.has_room(64)
        release.set()
    assert order == ["first", "second", "third"]
    assert admission.free_slots() == 1 and admission.queue_length() == 0


async def test_a_full_queue_refuses_at_once_and_names_a_peer_with_room() -> None:
    admission = Admission(Limits(slots=1, memory_mb=1024, queue_size=1), suggest_peer=lambda: "http://peer:1")
    hold = asyncio.Event()

    async def occupy() -> None:
        async with admission.slot(DIGEST_A, 64, timeout_s=10):
            await hold.wait()

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(occupy())
        tasks.create_task(occupy())  # queued
        await asyncio.sleep(0)
        with pytest.raises(Busy) as caught:
            async with admission.slot(DIGEST_A, 64, timeout_s=10):
                pass
        hold.set()
    assert caught.value.status == 503 and caught.value.peer == "http://peer:1"
    assert "http://peer:1" in str(caught.value) and "queue is full" in str(caught.value)


async def test_waiting_past_the_timeout_is_busy_and_leaves_the_queue() -> None:
    admission = Admission(Limits(slots=1, memory_mb=1024, queue_size=4))
    async with admission.slot(DIGEST_A, 64, timeout_s=1):
        with pytest.raises(Busy, match=r"within 0\.01 s") as caught:
            async with admission.slot(DIGEST_B, 64, timeout_s=0.01):
                pass
        assert caught.value.peer == "" and admission.queue_length() == 0
    assert admission.free_slots() == 1


async def test_a_cancelled_waiter_gives_its_place_away() -> None:
    admission = Admission(Limits(slots=1, memory_mb=1024, queue_size=4))
    ran: list[str] = []

    async def run(name: str) -> None:
        async with admission.slot(DIGEST_A, 64, timeout_s=10):
            ran.append(name)

    async with admission.slot(DIGEST_A, 64, timeout_s=1):
        doomed = asyncio.create_task(run("doomed"))
        later = asyncio.create_task(run("later"))
        await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.sleep(0)
    await later
    assert doomed.cancelled() and ran == ["later"]
    assert admission.free_slots() == 1 and admission.capacity.memory_used_mb == 0


async def test_a_large_head_does_not_lose_the_room_freed_for_it() -> None:
    admission = Admission(Limits(slots=4, memory_mb=300, queue_size=4))
    ran: list[str] = []

    async def run(name: str, memory_mb: int) -> None:
        async with admission.slot(DIGEST_A, memory_mb, timeout_s=10):
            ran.append(name)

    async with admission.slot(DIGEST_A, 200, timeout_s=1):
        big = asyncio.create_task(run("big", 250))
        await asyncio.sleep(0)
        small = asyncio.create_task(run("small", 50))  # would fit, but must not overtake
        await asyncio.sleep(0)
        assert ran == [] and admission.queue_length() == 2
    await asyncio.gather(big, small)
    assert ran == ["big", "small"]


@dataclass(frozen=True)
class Peer:
    url: str
    est_free: float
    rtt_s: float


def test_the_busy_answer_names_the_peer_with_most_room_nearest_first() -> None:
    assert peer_with_room([]) is None
    assert peer_with_room([Peer("http://full", 0.0, 0.001)]) is None
    peers = [Peer("http://far", 3.0, 0.050), Peer("http://near", 3.0, 0.002), Peer("http://one", 1.0, 0.001)]
    assert peer_with_room(peers) == "http://near"
