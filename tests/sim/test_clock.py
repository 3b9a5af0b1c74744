"""VirtualClockLoop: timers jump instead of sleeping, deterministically, and real wake-ups still work."""

from __future__ import annotations

import asyncio
import random
import selectors
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfaas.sim import START_TIME_S, VirtualClockLoop

T = TypeVar("T")


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await main()

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(wrapper())


def test_an_hour_of_sleep_never_waits_on_the_real_selector(monkeypatch: pytest.MonkeyPatch) -> None:
    # Deterministic stand-in for "takes no wall time": every wait the loop makes on the real
    # selector is a poll (timeout 0); the hour passes by jumping the clock.
    waits: list[float | None] = []
    real_select = selectors.DefaultSelector.select

    def recording_select(self: selectors.BaseSelector, timeout: float | None = None) -> Any:
        waits.append(timeout)
        return real_select(self, timeout)  # type: ignore[arg-type]

    monkeypatch.setattr(selectors.DefaultSelector, "select", recording_select)

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        return start, loop.time()

    start, end = run_virtual(main)
    assert waits and all(timeout == 0 for timeout in waits), waits
    assert start == START_TIME_S
    assert end - start == pytest.approx(3600, abs=1e-6)


def test_timeouts_fire_at_their_virtual_deadline() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.sleep(10)
        return loop.time() - start

    assert run_virtual(main) == pytest.approx(5, abs=1e-6)


def test_ready_callbacks_take_no_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(1000):
            await asyncio.sleep(0)
        return loop.time() - start

    assert run_virtual(main) == 0.0


def wake_order(seed: int) -> list[tuple[int, float]]:
    """Start 200 tasks with seeded delays (many ties) and record who wakes when."""

    async def main() -> list[tuple[int, float]]:
        loop = asyncio.get_running_loop()
        rng = random.Random(seed)
        woke: list[tuple[int, float]] = []

        async def sleeper(index: int, delay_s: float) -> None:
            await asyncio.sleep(delay_s)
            woke.append((index, loop.time() - START_TIME_S))

        async with asyncio.TaskGroup() as group:
            for index in range(200):
                group.create_task(sleeper(index, rng.choice([0.5, 1.0, 2.5, rng.uniform(0, 100)])))
        return woke

    return run_virtual(main)


def test_wake_order_is_deterministic_and_sorted_by_deadline() -> None:
    first, second = wake_order(3), wake_order(3)
    assert first == second
    times = [at for _, at in first]
    assert times == sorted(times)
    assert wake_order(4) != first


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=30))
def test_each_timer_fires_exactly_at_its_deadline(delays_s: list[float]) -> None:
    async def main() -> list[tuple[float, float]]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        fired: list[tuple[float, float]] = []
        done = loop.create_future()

        def fire(delay: float) -> None:
            fired.append((delay, loop.time() - start))

        for delay in delays_s:
            loop.call_later(delay, fire, delay)
        loop.call_later(max(delays_s) + 1, done.set_result, None)
        await done
        return fired

    fired = run_virtual(main)
    # asyncio's timer heap orders by deadline only (equal deadlines in heap order, not FIFO).
    assert sorted(d for d, _ in fired) == sorted(delays_s)
    assert [at for _, at in fired] == sorted(at for _, at in fired)
    assert fired == run_virtual(main)  # and that order is reproducible
    for delay, at in fired:
        assert at == pytest.approx(delay, abs=1e-3)


def test_threads_still_wake_the_loop() -> None:
    """With no timer armed the loop blocks on the real selector, so call_soon_threadsafe gets through."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()

        def wake() -> None:
            time.sleep(0.05)
            loop.call_soon_threadsafe(future.set_result, "woken")

        thread = threading.Thread(target=wake)
        thread.start()
        try:
            return await future
        finally:
            thread.join()

    assert run_virtual(main) == "woken"


def test_executor_work_completes() -> None:
    async def main() -> int:
        return await asyncio.get_running_loop().run_in_executor(None, sum, range(10))

    assert run_virtual(main) == 45


def test_executor_work_takes_no_virtual_time_even_with_timers_armed() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Without the executor accounting the 1 s timeout would fire before the 50 ms of wall-time work.
        await asyncio.wait_for(loop.run_in_executor(None, time.sleep, 0.05), timeout=1)
        return loop.time() - start

    assert run_virtual(main) == 0.0
