"""`Executor`: the network as a `concurrent.futures.Executor`.

    with Executor(Client(anchor_url, keys, wallet=wallet)) as pool:
        outcome = pool.submit("resize", {"url": ...}).result()
        for outcome in pool.map("square", range(10_000)):
            ...

`submit(name, payload)` invokes the deployed function `name` and returns a
`concurrent.futures.Future` of its `InvokeOutcome`, so `as_completed` and `wait` work on them;
`map(name, payloads)` yields outcomes in order, submitting lazily, never more than the in-flight
window ahead. At most `max_in_flight` invocations run at once (the rest wait on the client's loop,
not in threads). A call that found no node, was refused (busy, draining) or timed out is tried
again after a pause with jitter, up to `retries` times; a function that failed (`FunctionFailed`)
is never retried. Payment goes through the client's wallet, as for any call.

Not yet: plain Python callables packed by value (issue #16 item 2); `name` must be deployed.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from p2pfaas.client.outcome import InvokeOutcome
from p2pfaas.client.sync import Client
from p2pfaas.errors import FunctionFailed, InvokeTimeout, LocalError, Refused, Unreachable

__all__ = ["Executor"]

RETRYABLE = (Unreachable, Refused, InvokeTimeout)  # nothing ran, or we cannot know: try again


class Executor(concurrent.futures.Executor):
    """Invocations of deployed functions as futures, over a shared (thread-safe) `Client`."""

    def __init__(
        self,
        client: Client,
        *,
        max_in_flight: int = 64,
        retries: int = 3,
        backoff_s: float = 0.2,
        timeout_s: float | None = None,
        rng: random.Random | None = None,
        close_client: bool = False,
    ) -> None:
        if max_in_flight < 1:
            raise LocalError("max_in_flight must be at least 1")
        self.client = client
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.rng = rng or random.Random()
        self.close_client = close_client
        self.attempts = 0  # invocations sent, retries included (for tests and progress)
        self._window: asyncio.Semaphore | None = None  # made on the client's loop
        self._lock = threading.Lock()
        self._futures: set[concurrent.futures.Future[Any]] = set()
        self._shutdown = False

    def submit(
        self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        """Invoke deployed function `fn` (its name) on `args[0]` (the JSON payload, default None);
        keyword `timeout_s` overrides the executor's."""
        if not isinstance(fn, str):
            raise LocalError("give the name of a deployed function (Python callables are not packed yet)")
        if len(args) > 1:
            raise LocalError("a function takes one payload: pass a list or a dict for several values")
        timeout_s = kwargs.pop("timeout_s", self.timeout_s)
        if kwargs:
            raise LocalError(
                f"unknown options {sorted(kwargs)}: pass the function's arguments in the payload"
            )
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new invocations after shutdown")
            future = self.client.spawn(self._invoke(fn, args[0] if args else None, timeout_s))
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def map(
        self,
        fn: Callable[..., Any] | str,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """Outcomes of `fn` on each payload of `iterables[0]` (with several iterables, on the tuple
        of their items), in order. Payloads are consumed lazily: at most `max_in_flight` (rounded up
        to whole `chunksize` groups) are submitted ahead of the one being yielded. `timeout` bounds
        the whole iteration, as in `concurrent.futures`."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        payloads: Iterator[Any] = iter(iterables[0]) if len(iterables) == 1 else zip(*iterables, strict=False)
        end = None if timeout is None else time.monotonic() + timeout

        def results() -> Iterator[Any]:
            ahead: collections.deque[concurrent.futures.Future[Any]] = collections.deque()
            exhausted = False
            try:
                while True:
                    while not exhausted and len(ahead) < self.max_in_flight:
                        for _ in range(chunksize):
                            try:
                                payload = next(payloads)
                            except StopIteration:
                                exhausted = True
                                break
                            ahead.append(self.submit(fn, payload))
                    if not ahead:
                        return
                    left = None if end is None else max(0.0, end - time.monotonic())
                    yield ahead.popleft().result(timeout=left)
            finally:
                for future in ahead:
                    future.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            pending = list(self._futures)
        if cancel_futures:
            for future in pending:
                future.cancel()
        if wait:
            concurrent.futures.wait(pending)
        if self.close_client:
            self.client.close()

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    async def _invoke(self, name: str, payload: Any, timeout_s: float | None) -> InvokeOutcome:
        if self._window is None:
            self._window = asyncio.Semaphore(self.max_in_flight)
        async with self._window:
            for attempt in range(self.retries + 1):
                self.attempts += 1
                try:
                    return await self.client.async_client.invoke(name, payload, timeout_s=timeout_s)
                except FunctionFailed:
                    raise  # the function ran and failed: running it again would only fail again
                except RETRYABLE:
                    if attempt == self.retries:
                        raise
                await asyncio.sleep(self.backoff_s * 2**attempt * self.rng.uniform(0.5, 1.0))
        raise AssertionError("unreachable")
