"""An asyncio event loop whose clock is virtual: it jumps to the next timer instead of sleeping.

`VirtualClockLoop` is a stock `SelectorEventLoop` with two changes: `time()` reads a virtual clock, and the
selector it polls wraps a real one so that, when the loop would block with a timeout, the clock moves forward
by that timeout instead. Everything that asks the loop for time (`asyncio.sleep`, `asyncio.timeout`,
`call_later`, aiohttp's timeouts, rpcudp's RPC timeouts) then sees virtual time, and a run that sleeps an hour
takes as long as its callbacks take to execute.

What it does not do:
- It has no network of its own; `p2pfaas.sim.loop.SimLoop` adds in-memory endpoints.
- It cannot make real I/O instantaneous. Real file descriptors are still polled (with timeout 0 before any
  jump), so `call_soon_threadsafe` and real sockets keep working. Work submitted with `run_in_executor` takes
  zero virtual time: while any is in flight the loop waits for it in wall time and the clock stands still.
  Threads started by other means (a database driver's) must be announced with `hold_clock()`, as
  `p2pfaas.clock.off_loop()` does; otherwise pending timers fire at once while they run.
- It does not detect deadlock: with no timer armed and no callback ready it blocks on the real selector,
  exactly like a stock loop with nothing to do.
- `time.time()`/`time.monotonic()` are not patched; code that reads them directly sees wall time (that is
  why STYLE.md asks every component to read `loop.time()`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import selectors
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

__all__ = ["START_TIME_S", "VirtualClockLoop"]

_T = TypeVar("_T")

# A fixed start makes runs reproducible. It is far from zero, like a real monotonic clock on a machine that
# has been up for days, so code that uses 0.0 as "never" behaves as it does in production; at 1e6 s a float
# still resolves 1.2e-10 s, well under the loop's clock resolution.
START_TIME_S = 1_000_000.0
# The virtual wall clock (`p2pfaas.clock.wall_time`) starts at a fixed date, 2027-01-15, for the same reason.
START_WALL_TIME_S = 1_800_000_000.0


class _JumpingSelector(selectors.BaseSelector):
    """A real selector whose `select(timeout)` advances the loop's virtual clock instead of waiting.

    Driven by `BaseEventLoop._run_once`, which passes 0 when callbacks are ready, the delay to the nearest
    timer when one is armed, and None when there is nothing to wait for.
    """

    def __init__(self, loop: VirtualClockLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return self._real.select(0)  # callbacks are ready: just poll
        if timeout is None or self._loop._executor_jobs:
            # No timer is armed, or executor work is in flight (it takes no virtual time): only a real event
            # (a thread calling call_soon_threadsafe, a real socket) may move us on.
            return self._real.select(None)
        # Real readiness first, with no wait: the self-pipe must be drained even while virtual time runs.
        ready = self._real.select(0)
        if ready:
            return ready
        self._loop._advance_clock(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that starts at `start_time_s` and jumps between timers.

    Driven like any loop (`run_until_complete`, `asyncio.Runner(loop_factory=VirtualClockLoop)`); the clock
    moves only when the loop would otherwise block waiting for a timer.
    """

    def __init__(self, *, start_time_s: float = START_TIME_S) -> None:
        # Set before the base initialiser, which may already ask for the time.
        self._virtual_now_s = float(start_time_s)
        self._virtual_start_s = float(start_time_s)
        self._executor_jobs = 0
        super().__init__(selector=_JumpingSelector(self))

    def time(self) -> float:
        return self._virtual_now_s

    def wall_time(self) -> float:
        """Virtual seconds since the Unix epoch: what `p2pfaas.clock.wall_time()` returns on this loop."""
        return START_WALL_TIME_S + self.elapsed_s

    @property
    def elapsed_s(self) -> float:
        """Virtual seconds since the loop was created."""
        return self._virtual_now_s - self._virtual_start_s

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        # Count jobs in flight so the selector waits for them instead of jumping past their completion.
        future = super().run_in_executor(executor, func, *args)
        self._executor_jobs += 1
        future.add_done_callback(self._executor_job_done)
        return future

    def _executor_job_done(self, _future: asyncio.Future[Any]) -> None:
        self._executor_jobs -= 1

    @contextlib.contextmanager
    def hold_clock(self) -> Iterator[None]:
        """Keep the clock still while the caller waits on a thread of its own (`p2pfaas.clock.off_loop`)."""
        self._executor_jobs += 1
        try:
            yield
        finally:
            self._executor_jobs -= 1

    def _advance_clock(self, delta_s: float) -> None:
        """Move virtual time forward by `delta_s` (only the selector calls this)."""
        assert delta_s >= 0, delta_s
        self._virtual_now_s += delta_s
