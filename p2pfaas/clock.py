"""The one place that reads the wall clock, and the one that marks work done off the loop.

Durations and timers use the running loop's `loop.time()` everywhere. Only timestamps that cross
machines (when a record was made, when it expires) need wall time; they come from here, and a
simulation loop that defines `wall_time()` supplies its virtual wall clock instead.

`off_loop()` wraps awaits that complete in another thread (a database driver's): a simulation loop
that defines `hold_clock()` keeps its virtual clock still meanwhile, so timers do not fire early
while the thread works. On a real loop it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator


def wall_time() -> float:
    """Seconds since the Unix epoch, from the running loop's wall clock if it has one."""
    loop = asyncio.get_running_loop()
    virtual = getattr(loop, "wall_time", None)
    if virtual is not None:
        return float(virtual())
    return time.time()


@contextlib.contextmanager
def off_loop() -> Iterator[None]:
    """Mark the enclosed awaits as waiting on another thread (see the module docstring)."""
    hold = getattr(asyncio.get_running_loop(), "hold_clock", None)
    if hold is None:
        yield
        return
    with hold():
        yield
