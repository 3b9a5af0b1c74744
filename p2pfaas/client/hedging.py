"""The first answer from a stream of candidates, asked one after another and hedged (Dean & Barroso,
"The Tail at Scale", 2013): the next candidate is asked when none has answered yet (each answer
of None means "not this one": busy, gone), and also when the newest has been silent for
`hedge_after_s`, with at most `max_hedged` asked at once. The first real answer wins and the other
attempts are cancelled. One deadline covers the whole search, so candidates that accept a
connection and never answer cost the caller that deadline, not one wait each.

An attempt that raises ends the search with its error (a refusal no other candidate would change).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

C = TypeVar("C")
R = TypeVar("R")


async def first_answer(
    candidates: AsyncIterator[C],
    attempt: Callable[[C], Coroutine[Any, Any, R | None]],
    *,
    deadline: float,
    hedge_after_s: float,
    max_hedged: int,
) -> tuple[C, R] | None:
    """(the candidate, its answer) of the first attempt that answered; None when every candidate
    answered None. Raises TimeoutError at `deadline` (the loop's clock)."""
    loop = asyncio.get_running_loop()
    pending: dict[asyncio.Task[R | None], C] = {}
    started_at = float("-inf")
    more = True
    try:
        while True:
            now = loop.time()
            hedge = len(pending) < max_hedged and now >= started_at + hedge_after_s
            if more and (not pending or hedge):
                candidate = await anext(candidates, None)
                if candidate is None:
                    more = False
                else:
                    pending[loop.create_task(attempt(candidate))] = candidate
                    started_at = loop.time()
                    continue
            if not pending:
                return None
            left_s = deadline - loop.time()
            if left_s <= 0:
                raise TimeoutError
            if more and len(pending) < max_hedged:
                left_s = min(left_s, max(0.0, started_at + hedge_after_s - loop.time()))
            done, _ = await asyncio.wait(pending, timeout=left_s, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                candidate = pending.pop(task)
                answer = task.result()
                if answer is not None:
                    return candidate, answer
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
