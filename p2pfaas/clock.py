"""The one place that reads the wall clock.

Durations and timers use the running loop's `loop.time()` everywhere. Only timestamps that cross
machines (when a record was made, when it expires) need wall time; they come from here, and a
simulation loop that defines `wall_time()` supplies its virtual wall clock instead.
"""

from __future__ import annotations

import asyncio
import time


def wall_time() -> float:
    """Seconds since the Unix epoch, from the running loop's wall clock if it has one."""
    loop = asyncio.get_running_loop()
    virtual = getattr(loop, "wall_time", None)
    if virtual is not None:
        return float(virtual())
    return time.time()
