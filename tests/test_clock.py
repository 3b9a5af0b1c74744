"""The wall clock (`p2pfaas.clock`): the running loop's own when it has one, else the system's; and
`off_loop` holds a loop's clock only where the loop offers to."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from p2pfaas.clock import off_loop, wall_time


class VirtualLoop(asyncio.SelectorEventLoop):
    """A loop with a wall clock of its own and a clock that can be held, as the simulator's has."""

    def __init__(self) -> None:
        super().__init__()
        self.held = 0

    def wall_time(self) -> float:
        return 1234.5

    @contextlib.contextmanager
    def hold_clock(self) -> Iterator[None]:
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1


async def test_a_real_loop_gives_the_system_time_and_holds_nothing() -> None:
    before = time.time()
    now = wall_time()
    assert before <= now <= time.time()
    with off_loop():
        await asyncio.sleep(0)


def test_a_loop_with_a_wall_clock_gives_its_own_and_holds_its_clock_off_the_loop() -> None:
    loop = VirtualLoop()
    seen: list[tuple[float, int]] = []

    async def main() -> None:
        seen.append((wall_time(), loop.held))
        with off_loop():
            seen.append((wall_time(), loop.held))
        seen.append((wall_time(), loop.held))

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert seen == [(1234.5, 0), (1234.5, 1), (1234.5, 0)]
