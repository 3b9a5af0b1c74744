"""`Executor`: the network as a `concurrent.futures.Executor`.

    with Executor(Client(anchor_url, keys, wallet=wallet)) as pool:
        outcome = pool.submit("resize", {"url": ...}).result()
        for outcome in pool.map("square", range(10_000)):
            ...

`submit(name, payload)` invokes the deployed function `name` and returns a `CallFuture` (a
`concurrent.futures.Future`) of its `InvokeOutcome`, so `as_completed` and `wait` work on them;
`future.logs()` is what the call printed, failed or not.
`submit(f, *args, **kwargs)` with a plain Python callable `f` (of a script or a notebook) packs it
by value into a bundle (`p2pfaas.client.callables`), deploys that once per version, and runs
`f(*args, **kwargs)` on the network: the future's result is `f`'s return value, decoded from a safe
encoding and never unpickled (`UnencodableResult` when `f` returned a type that cannot travel);
`map(name, payloads)` yields outcomes in order, submitting lazily, never more than the in-flight
window ahead. At most `max_in_flight` invocations run at once (the rest wait on the client's loop,
not in threads). A call that found no node, was refused (busy, draining) or timed out is tried
again after a pause with jitter, up to `retries` times; a function that failed (`FunctionFailed`)
is never retried. Payment goes through the client's wallet, as for any call.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from p2pfaas.client.calls import Calls, abandon, policy, progress_bar
from p2pfaas.client.sync import Client

__all__ = ["CallFuture", "Executor"]


class CallFuture(concurrent.futures.Future[Any]):
    """The future of one call: `result()` as any future's, and `logs()`, what the call printed."""

    def __init__(self) -> None:
        super().__init__()
        self.printed = ""  # set on the client's loop before the future completes

    def logs(self, timeout: float | None = None) -> str:
        """What the call printed (stdout and stderr, as its node signed it, 64 KiB at most); waits
        for the call like `result()` (TimeoutError after `timeout`), whether it failed or not."""
        concurrent.futures.wait([self], timeout)
        if not self.done():
            raise TimeoutError("the call has not finished")
        return self.printed

    def tell_logs(self, printed: str) -> None:
        self.printed = printed


def _settle(outer: CallFuture, inner: concurrent.futures.Future[Any]) -> None:
    """`inner` (the coroutine's future on the client's loop) is done: so is `outer`, the same way."""
    if inner.cancelled():
        outer.cancel()
    if not outer.set_running_or_notify_cancel():  # cancelled: wakes `wait` and `as_completed`
        return
    error = inner.exception()
    if error is not None:
        outer.set_exception(error)
    else:
        outer.set_result(inner.result())


class Executor(concurrent.futures.Executor):
    """Invocations of deployed functions as futures, over a shared (thread-safe) `Client`."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        max_in_flight: int = 64,
        retries: int = 3,
        backoff_s: float = 0.2,
        timeout_s: float | None = None,
        memory_mb: int = 128,
        requirements: Sequence[str] = (),
        rng: random.Random | None = None,
        close_client: bool = False,
    ) -> None:
        """`client` defaults to `Client.from_environment()` (closed with the executor); the other
        arguments are the `CallPolicy`'s (p2pfaas/client/calls.py)."""
        rules = policy(
            max_in_flight=max_in_flight, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s,
            memory_mb=memory_mb, requirements=requirements, rng=rng,
        )  # fmt: skip
        if client is None:  # what `p2pfaas keys new` and `account login` left: this executor's own
            client, close_client = Client.from_environment(), True
        self.client = client
        self.max_in_flight = max_in_flight
        self.close_client = close_client
        self.calls = Calls(client.async_client, rules)
        self._lock = threading.Lock()
        self._futures: set[concurrent.futures.Future[Any]] = set()
        self._shutdown = False

    @property
    def attempts(self) -> int:
        """Invocations sent, retries included (for tests and progress)."""
        return self.calls.attempts

    def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> CallFuture:
        """Invoke deployed function `fn` (its name) on `args[0]` (the JSON payload, default None;
        keyword `timeout_s` overrides the executor's), or run the Python callable `fn` on `args`
        and `kwargs` (all of them its own)."""
        future = CallFuture()
        work = self.calls.work(fn, args, kwargs, future.tell_logs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new invocations after shutdown")
            inner = self.client.spawn(work())
            self._futures.add(future)
        inner.add_done_callback(functools.partial(_settle, future))
        future.add_done_callback(lambda done: inner.cancel() if done.cancelled() else None)
        future.add_done_callback(self._forget)
        return future

    def map(
        self,
        fn: Callable[..., Any] | str,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        progress: bool | Any = False,
    ) -> Iterator[Any]:
        """Outcomes of deployed function `fn` on each payload of `iterables[0]` (with several
        iterables, on the tuple of their items), or the values of the callable `fn` on the items of
        `iterables` (`fn(a, b)` for each pair), in order. Payloads are consumed lazily: at most
        `max_in_flight` (rounded up to whole `chunksize` groups) are submitted ahead of the one
        being yielded. `timeout` bounds the whole iteration, as in `concurrent.futures`.
        `progress=True` shows a tqdm progress bar of the results yielded (`pip install tqdm`), or
        pass a tqdm-like object with `update(n)` and `close()` to drive your own."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        spread = not isinstance(fn, str)  # a callable takes the items as its arguments
        payloads: Iterator[Any] = (
            zip(*iterables, strict=False) if spread or len(iterables) > 1 else iter(iterables[0])
        )
        end = None if timeout is None else time.monotonic() + timeout

        def results() -> Iterator[Any]:
            bar = progress_bar(progress, iterables)  # drawn once the results are asked for
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
                            ahead.append(self.submit(fn, *payload) if spread else self.submit(fn, payload))
                    if not ahead:
                        return
                    left = None if end is None else max(0.0, end - time.monotonic())
                    value = ahead.popleft().result(timeout=left)
                    bar.update(1)
                    yield value
            finally:
                abandon(ahead, bar)

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
