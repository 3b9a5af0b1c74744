"""What both executors do with each call: a window of calls in flight, retries, and callables packed once.

`Calls(client, policy)` runs on the client's loop. `invoke(name, payload)` waits for room in the
window (`policy.max_in_flight`), then invokes; a call that found no node, was refused (busy,
draining) or timed out is tried again after a pause with jitter, up to `policy.retries` times; a
function that failed (`FunctionFailed`) is never retried. `call(f, payload)` packs the Python callable
`f` by value once per version (`p2pfaas.client.callables`) and returns its decoded value.
`Executor` (threads, `concurrent.futures`) and `AsyncExecutor` (asyncio) are the two faces of it.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from p2pfaas.client.callables import Callables, call_payload, outcome_value
from p2pfaas.client.outcome import InvokeOutcome
from p2pfaas.errors import FunctionFailed, InvokeTimeout, LocalError, Refused, Unreachable

if TYPE_CHECKING:
    from p2pfaas.client.async_client import AsyncClient

RETRYABLE = (Unreachable, Refused, InvokeTimeout)  # nothing ran, or we cannot know: try again
Logs = Callable[[str], None]  # told what a call printed, once it is over


@dataclass(frozen=True)
class CallPolicy:
    """How an executor calls: `timeout_s` bounds each call (and is a packed callable's timeout, 10 s
    when None); `memory_mb` is a packed callable's memory limit, `requirements` the packages it
    needs (wheels from the index, resolved when it is packed: `["numpy>=2"]`)."""

    max_in_flight: int = 64
    retries: int = 3
    backoff_s: float = 0.2
    timeout_s: float | None = None
    memory_mb: int = 128
    requirements: tuple[str, ...] = ()
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise LocalError("max_in_flight must be at least 1")
        if self.retries < 0 or self.backoff_s < 0:
            raise LocalError("retries and backoff_s must not be negative")


def policy(
    *,
    max_in_flight: int,
    retries: int,
    backoff_s: float,
    timeout_s: float | None,
    memory_mb: int,
    requirements: Sequence[str],
    rng: random.Random | None,
) -> CallPolicy:
    return CallPolicy(
        max_in_flight, retries, backoff_s, timeout_s, memory_mb, tuple(requirements), rng or random.Random()
    )


class Calls:
    def __init__(self, client: AsyncClient, policy: CallPolicy) -> None:
        self.client = client
        self.policy = policy
        self.attempts = 0  # invocations sent, retries included (for tests and progress)
        self._window: asyncio.Semaphore | None = None  # made on the client's loop, when first used
        self._callables: Callables | None = None  # Python callables packed and deployed so far

    def work(
        self, fn: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], on_logs: Logs
    ) -> Callable[[], Coroutine[Any, Any, Any]]:
        """What `submit(fn, *args, **kwargs)` runs (made when the call is taken; LocalError now for a
        bad call): deployed function `fn` (its name) on `args[0]`, the JSON payload (keyword
        `timeout_s` overrides the policy's), or the Python callable `fn` on all of them."""
        if isinstance(fn, str):
            if len(args) > 1:
                raise LocalError("a function takes one payload: pass a list or a dict for several values")
            timeout_s = kwargs.pop("timeout_s", self.policy.timeout_s)
            if kwargs:
                raise LocalError(
                    f"unknown options {sorted(kwargs)}: pass the function's arguments in the payload"
                )
            return functools.partial(self.invoke, fn, args[0] if args else None, timeout_s, on_logs)
        if callable(fn):
            return functools.partial(self.call, fn, call_payload(args, kwargs), on_logs)
        raise LocalError(f"give a deployed function's name or a Python callable, not {type(fn).__name__}")

    async def call(self, fn: Callable[..., Any], payload: dict[str, str], on_logs: Logs) -> Any:
        if self._callables is None:
            self._callables = Callables(
                self.client,
                memory_mb=self.policy.memory_mb,
                timeout_s=self.policy.timeout_s or 10.0,
                requirements=self.policy.requirements,
            )
        ref = await self._callables.ref(fn)
        return await outcome_value(self.invoke(ref, payload, self.policy.timeout_s, on_logs))

    async def invoke(self, name: str, payload: Any, timeout_s: float | None, on_logs: Logs) -> InvokeOutcome:
        if self._window is None:
            self._window = asyncio.Semaphore(self.policy.max_in_flight)
        retries, backoff_s, rng = self.policy.retries, self.policy.backoff_s, self.policy.rng
        async with self._window:
            for attempt in range(retries + 1):
                self.attempts += 1
                try:
                    outcome = await self.client.invoke(name, payload, timeout_s=timeout_s)
                except FunctionFailed as failed:
                    on_logs(failed.logs)
                    raise  # the function ran and failed: running it again would only fail again
                except RETRYABLE as error:
                    if attempt == retries:
                        on_logs(getattr(error, "logs", ""))
                        raise
                else:
                    on_logs(outcome.logs)
                    return outcome
                await asyncio.sleep(backoff_s * 2**attempt * rng.uniform(0.5, 1.0))
        raise AssertionError("unreachable")


def ignore_logs(_: str) -> None:
    """For callers that read the logs from the outcome (or the error) itself."""


class NoBar:
    """The progress bar of a `map` that shows none."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def abandon(pending: Iterable[Any], bar: Any) -> None:
    """A `map` ends (consumed, failed, or dropped by its caller): cancel what it submitted ahead."""
    for future in pending:
        future.cancel()
    bar.close()


def progress_bar(progress: bool | Any, iterables: tuple[Iterable[Any], ...]) -> Any:
    """A progress bar for an executor's `map` (a `NoBar` for none): tqdm's, sized when the inputs
    have a length, or the caller's own."""
    if progress is False or progress is None:
        return NoBar()
    if progress is not True:
        return progress  # the caller's own bar
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise LocalError("progress=True needs tqdm: pip install tqdm") from None
    sizes = [len(it) for it in iterables if hasattr(it, "__len__")]  # type: ignore[arg-type]
    return tqdm(total=min(sizes) if len(sizes) == len(iterables) else None, unit="call")
