"""`AsyncExecutor`: the network as asyncio tasks, for code that already runs on an event loop.

    async with AsyncExecutor(AsyncClient(anchor_url, keys, wallet=wallet)) as pool:
        outcome = await pool.submit("resize", {"url": ...})
        async for value in pool.map(square, range(10_000)):
            ...

The asyncio face of `Executor` (p2pfaas/client/executor.py), with the same calls underneath
(`p2pfaas.client.calls`: the in-flight window, retries with backoff and jitter, never a retry of a
function that failed, Python callables packed by value once per version). `submit` returns an
`asyncio.Task`; `map` is an async iterator of results in order, consuming its inputs (sync or async
iterables) lazily, at most `max_in_flight` ahead. Leaving the `async with` waits for the tasks
still running; `shutdown(cancel_futures=True)` cancels them instead.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

from p2pfaas.client.async_client import AsyncClient
from p2pfaas.client.calls import Calls, abandon, ignore_logs, policy, progress_bar

__all__ = ["AsyncExecutor"]


class AsyncExecutor:
    def __init__(
        self,
        client: AsyncClient,
        *,
        max_in_flight: int = 64,
        retries: int = 3,
        backoff_s: float = 0.2,
        timeout_s: float | None = None,
        memory_mb: int = 128,
        requirements: Sequence[str] = (),
        rng: random.Random | None = None,
    ) -> None:
        """The arguments after `client` are the `CallPolicy`'s (p2pfaas/client/calls.py)."""
        rules = policy(
            max_in_flight=max_in_flight, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s,
            memory_mb=memory_mb, requirements=requirements, rng=rng,
        )  # fmt: skip
        self.client = client
        self.max_in_flight = max_in_flight
        self.calls = Calls(client, rules)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._shutdown = False

    @property
    def attempts(self) -> int:
        """Invocations sent, retries included."""
        return self.calls.attempts

    def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
        """As `Executor.submit`: deployed function `fn` on the payload `args[0]` (an `InvokeOutcome`,
        whose `logs` are what the call printed), or the Python callable `fn` on `args` and `kwargs`
        (its value)."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new invocations after shutdown")
        work = self.calls.work(fn, args, dict(kwargs), ignore_logs)
        task = asyncio.get_running_loop().create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def map(
        self,
        fn: str | Callable[..., Any],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        chunksize: int = 1,
        progress: bool | Any = False,
    ) -> AsyncIterator[Any]:
        """As `Executor.map`: results in order (the first failure is raised where it falls), inputs
        consumed lazily; each of `iterables` may be a plain or an async iterable."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        spread = not isinstance(fn, str)  # a callable takes the items as its arguments
        items = _zip(iterables)
        bar = progress_bar(progress, tuple(i for i in iterables if isinstance(i, Iterable)))
        ahead: collections.deque[asyncio.Task[Any]] = collections.deque()
        exhausted = False
        try:
            while True:
                while not exhausted and len(ahead) < self.max_in_flight:
                    for _ in range(chunksize):
                        try:
                            item = await anext(items)
                        except StopAsyncIteration:
                            exhausted = True
                            break
                        if spread:
                            ahead.append(self.submit(fn, *item))
                        else:
                            ahead.append(self.submit(fn, item if len(iterables) > 1 else item[0]))
                if not ahead:
                    return
                value = await ahead.popleft()
                bar.update(1)
                yield value
        finally:
            abandon(ahead, bar)
            await items.aclose()

    async def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        pending = list(self._tasks)
        if cancel_futures:
            for task in pending:
                task.cancel()
        if wait:
            await asyncio.gather(*pending, return_exceptions=True)

    async def __aenter__(self) -> AsyncExecutor:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown(wait=True, cancel_futures=exc is not None)


async def _zip(
    iterables: Sequence[Iterable[Any] | AsyncIterable[Any]],
) -> AsyncGenerator[tuple[Any, ...], None]:
    """The tuples of the items of `iterables` (plain or async), to the end of the shortest."""
    iterators = [_each(it) for it in iterables]
    try:
        while True:
            try:
                row = tuple([await anext(it) for it in iterators])
            except StopAsyncIteration:
                return
            yield row
    finally:
        for it in iterators:
            await it.aclose()


async def _each(iterable: Iterable[Any] | AsyncIterable[Any]) -> AsyncGenerator[Any, None]:
    if isinstance(iterable, AsyncIterable):
        async for item in iterable:
            yield item
    else:
        for item in iterable:
            yield item
