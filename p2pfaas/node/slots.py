"""`LocalSlots`: this process's invocation slots, and the FIFO queue of invocations waiting for one.

The router runs an invocation here only with a slot: `acquire` takes a free one at once, or queues
the caller until `release` (called when an invocation here ends) passes its slot on to the head of
the queue. A queued invocation can still leave: its wait times out (Busy), it is handed to a peer
that reported room (`hand_off`), or the node drains (`take_all`); a waiter leaves by the exception
`HandOff` and re-runs placement. A woken waiter counts as running at once, so a slot is never
given twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from p2pfaas.errors import Busy
from p2pfaas.messages import InvokeRequest

__all__ = ["HandOff", "LocalSlots", "Queued"]


@dataclass
class Queued:
    request: InvokeRequest
    hops: int
    future: asyncio.Future[None]


class HandOff(Exception):
    """A queued invocation leaves the local queue: for `target`, a peer that reported room, or (None)
    for whichever neighbour placement picks, because this node is draining."""

    def __init__(self, target: str | None = None) -> None:
        super().__init__(target)
        self.target = target


@dataclass
class LocalSlots:
    capacity: Callable[[], int]  # the slots this process may use (the admission's limit)
    running: int = 0  # invocations holding a slot here, including woken waiters
    _queue: deque[Queued] = field(default_factory=deque)

    @property
    def waiting(self) -> Sequence[Queued]:
        """The queue, oldest first (read it; `acquire`, `hand_off` and `take_all` change it)."""
        return self._queue

    def by_digest(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self._queue:
            out[item.request.digest] = out.get(item.request.digest, 0) + 1
        return out

    async def acquire(self, request: InvokeRequest, hops: int, *, front: bool = False) -> None:
        """Return holding a slot: at once when one is free and nobody waits, else in queue order.
        Raises Busy when none frees within the request's timeout, HandOff when it leaves the queue."""
        if not self._queue and self.running < self.capacity():
            self.running += 1
            return
        item = Queued(request, hops, asyncio.get_running_loop().create_future())
        if front:
            self._queue.appendleft(item)
        else:
            self._queue.append(item)
        try:
            await asyncio.wait_for(asyncio.shield(item.future), request.timeout_s)
        except TimeoutError:
            if _granted(item.future):
                return  # the slot came just as the wait timed out
            self._leave(item)
            raise Busy(f"no slot became free within {request.timeout_s:g} s") from None
        except BaseException:  # cancelled, or handed off
            if _granted(item.future):  # a slot was reserved for it: give it to the next
                self.release()
            self._leave(item)
            raise

    def release(self) -> None:
        """An invocation here ended: its slot goes to the oldest waiter, if any."""
        self.running -= 1
        while self._queue and self.running < self.capacity():
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_result(None)
                self.running += 1

    def hand_off(self, target: str, count: int, *, max_hops: int) -> int:
        """Send up to `count` of the longest-waiting invocations to `target`; how many left."""
        handed = 0
        for item in list(self._queue):
            if handed >= count:
                break
            if item.future.done() or item.hops + 1 > max_hops:
                continue
            self._leave(item)
            item.future.set_exception(HandOff(target))
            handed += 1
        return handed

    def take_all(self) -> list[Queued]:
        """Empty the queue and return what waited (the caller decides where each goes)."""
        queued, self._queue = list(self._queue), deque()
        return queued

    def _leave(self, item: Queued) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(item)


def _granted(future: asyncio.Future[None]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
