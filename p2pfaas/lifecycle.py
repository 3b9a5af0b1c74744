"""Who owns what runs: a service's resources in one `contextlib.AsyncExitStack`, and the background
tasks of one owner in a `TaskSet`.

`async with Service() as s:` runs `_start`, which enters each resource into `self._stack` in the
order it needs them; leaving, or a start that fails half way, closes them in reverse order.

Every background task belongs to an owner, either a scope's `asyncio.TaskGroup` or an object's
`TaskSet`, and that owner has one place that ends it (`TaskSet.cancel`, called where the owner
closes). No task is created and forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class TaskSet:
    """The background tasks of one owner, for lifetimes that are not one lexical scope (where a
    scope is the lifetime, use `asyncio.TaskGroup`). `spawn` starts a task and keeps it until it
    ends; `cancel` ends every task still running and waits for them; `wait` lets them finish."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Until every task (also those spawned meanwhile) has ended; their errors are logged."""
        while self._tasks:
            self._log_failures(await asyncio.gather(*list(self._tasks), return_exceptions=True))

    def cancel_soon(self) -> None:
        """Cancel every task without waiting (for owners whose close is synchronous, such as an
        asyncio protocol's); the loop runs each to its end."""
        for task in list(self._tasks):
            task.cancel()

    async def cancel(self) -> None:
        """Cancel every task and wait until each has ended; errors other than the cancellation are logged."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        self._log_failures([o for o in outcomes if not isinstance(o, asyncio.CancelledError)])

    @staticmethod
    def _log_failures(outcomes: list[Any]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                log.error("a background task failed", exc_info=outcome)


class StackService:
    """Subclasses implement `_start`, entering what they open into `self._stack`."""

    _stack: contextlib.AsyncExitStack

    async def _start(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._stack = contextlib.AsyncExitStack()
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user's counts: it is not ours to reuse)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
