"""`p2pfaas.client.calls`, what both executors do with each call: the policy's bounds, the shape of a
call checked before anything is sent, and the progress bar of a `map` (no network here; the calls
themselves run in tests/client/test_executor.py and test_async_executor.py)."""

from __future__ import annotations

import pytest

from p2pfaas.client.calls import CallPolicy, Calls, NoBar, abandon, progress_bar
from p2pfaas.errors import LocalError


def test_a_policy_out_of_bounds_is_refused() -> None:
    with pytest.raises(LocalError, match="max_in_flight"):
        CallPolicy(max_in_flight=0)
    with pytest.raises(LocalError, match="negative"):
        CallPolicy(retries=-1)


def test_a_bad_call_is_refused_before_anything_runs() -> None:
    calls = Calls(client=None, policy=CallPolicy())  # type: ignore[arg-type]  # never reached
    with pytest.raises(LocalError, match="one payload"):
        calls.work("echo", (1, 2), {}, print)
    with pytest.raises(LocalError, match="unknown options"):
        calls.work("echo", (1,), {"retries": 3}, print)
    with pytest.raises(LocalError, match="not int"):
        calls.work(7, (), {}, print)  # type: ignore[arg-type]
    assert calls.attempts == 0


def test_no_bar_unless_asked_and_abandon_cancels_what_was_ahead() -> None:
    assert isinstance(progress_bar(False, ()), NoBar)

    class Pending:
        cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    class Bar(NoBar):
        closed = False

        def close(self) -> None:
            self.closed = True

    ahead, bar = [Pending(), Pending()], Bar()
    assert progress_bar(bar, ()) is bar
    abandon(ahead, bar)
    assert all(p.cancelled for p in ahead) and bar.closed
