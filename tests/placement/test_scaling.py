"""The pre-warm planner: hot neighbours' functions are warmed here, and let go when they cool."""

from __future__ import annotations

from p2pfaas.placement.scaling import Prewarm, PrewarmPlanner, Release
from p2pfaas.placement.view import PeerLoad

F, G = "f" * 64, "9" * 64


def _load(
    *, queued: dict[str, int] | None = None, warm: dict[str, int] | None = None, draining: bool = False
) -> PeerLoad:
    return PeerLoad(
        "a" * 40, "", 1, 4, 0, sum((queued or {}).values()), draining, warm or {}, queued or {}, 0.0
    )


def test_a_neighbours_queue_makes_its_function_warm_here_once() -> None:
    planner = PrewarmPlanner(hot_queue=2, max_prewarm=2, cool_after_s=10.0)
    assert planner.plan(0.0, [_load(queued={F: 1})], free_slots=2, warm={}) == []
    assert planner.plan(1.0, [_load(queued={F: 5})], free_slots=2, warm={}) == [Prewarm(F, 2)]
    assert planner.plan(2.0, [_load(queued={F: 5})], free_slots=2, warm={F: 2}) == []  # already done


def test_no_free_slot_no_prewarm() -> None:
    planner = PrewarmPlanner()
    assert planner.plan(0.0, [_load(queued={F: 9})], free_slots=0, warm={}) == []


def test_a_draining_neighbours_warm_functions_are_warmed_here() -> None:
    planner = PrewarmPlanner()
    actions = planner.plan(0.0, [_load(warm={G: 1, F: 0}, draining=True)], free_slots=3, warm={})
    assert actions == [Prewarm(G, 1)]


def test_what_cools_is_released_after_cool_after_s() -> None:
    planner = PrewarmPlanner(hot_queue=2, cool_after_s=10.0)
    assert planner.plan(0.0, [_load(queued={F: 4})], free_slots=1, warm={}) == [Prewarm(F, 2)]
    assert planner.plan(5.0, [], free_slots=1, warm={F: 2}) == []
    assert planner.plan(10.5, [], free_slots=1, warm={F: 2}) == [Release(F)]
    assert planner.prewarmed == {}
    assert planner.plan(11.0, [], free_slots=1, warm={}) == []  # released once
