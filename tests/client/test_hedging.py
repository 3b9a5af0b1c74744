"""`first_answer` (p2pfaas/client/hedging.py) on the simulator's virtual clock: candidates are asked
in turn when one says no, hedged when one is silent, never more than `max_hedged` at once, all within
one deadline; the winner's rivals are cancelled, and an attempt's error ends the search."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from p2pfaas import sim
from p2pfaas.client.hedging import first_answer


class Peers:
    """Candidates that answer after `delay_s` with their answer (None: "not me"; an exception: raised)."""

    def __init__(self, behaviour: dict[str, tuple[float, object]]) -> None:
        self.behaviour = behaviour
        self.asked: list[tuple[str, float]] = []
        self.cancelled: list[str] = []
        self.most_at_once = self.running = 0

    async def candidates(self) -> AsyncIterator[str]:
        for name in self.behaviour:
            yield name

    async def attempt(self, name: str) -> str | None:
        loop = asyncio.get_running_loop()
        self.asked.append((name, loop.time()))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        delay_s, answer = self.behaviour[name]
        try:
            await asyncio.sleep(delay_s)
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        finally:
            self.running -= 1
        if isinstance(answer, BaseException):
            raise answer
        return None if answer is None else str(answer)


def search(peers: Peers, *, within_s: float = 100.0) -> tuple[str, str] | None:
    async def main(net: sim.InMemoryNetwork) -> tuple[str, str] | None:
        loop = asyncio.get_running_loop()
        return await first_answer(
            peers.candidates(),
            peers.attempt,
            deadline=loop.time() + within_s,
            hedge_after_s=5.0,
            max_hedged=2,
        )

    return sim.run(main, seed=1)


def test_the_first_candidate_that_answers_wins_and_a_no_moves_on_at_once() -> None:
    peers = Peers({"busy": (1.0, None), "good": (1.0, "ok"), "unasked": (1.0, "ok")})
    assert search(peers) == ("good", "ok")
    [(first, t0), (second, t1)] = peers.asked
    assert (first, second) == ("busy", "good") and t1 - t0 == pytest.approx(1.0)


def test_a_silent_candidate_is_hedged_and_cancelled_when_the_next_one_answers() -> None:
    peers = Peers({"silent": (1000.0, "late"), "quick": (1.0, "ok"), "third": (1.0, "ok")})
    assert search(peers) == ("quick", "ok")
    assert [name for name, _ in peers.asked] == ["silent", "quick"]
    assert peers.asked[1][1] - peers.asked[0][1] == pytest.approx(5.0)  # after hedge_after_s
    assert peers.cancelled == ["silent"] and peers.most_at_once == 2


def test_never_more_than_max_hedged_at_once_and_one_deadline_for_all() -> None:
    peers = Peers({f"silent{i}": (1000.0, "late") for i in range(5)})
    with pytest.raises(TimeoutError):
        search(peers, within_s=30.0)
    assert peers.most_at_once == 2 and len(peers.asked) == 2
    assert sorted(peers.cancelled) == ["silent0", "silent1"]


def test_when_everyone_says_no_the_answer_is_none_and_an_error_ends_the_search() -> None:
    assert search(Peers({"a": (1.0, None), "b": (1.0, None)})) is None
    peers = Peers({"refuses": (1.0, PermissionError("no")), "good": (1.0, "ok")})
    with pytest.raises(PermissionError):
        search(peers)
    assert [name for name, _ in peers.asked] == ["refuses"]
