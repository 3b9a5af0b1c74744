"""A service whose resources live in one `contextlib.AsyncExitStack` (the anchor server, the node
daemon, a node's worker process).

`async with Service() as s:` runs `_start`, which enters each resource into `self._stack` in the
order it needs them; leaving, or a start that fails half way, closes them in reverse order.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self


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
