"""Neighbour-driven pre-warming: scaling stays local, but hot functions spread (issue #6, item 3).

`PrewarmPlanner` is a sans-I/O core fed with the gossiped reports of this node's neighbours, its own
free slots and warm instances, and `now`. A function is *hot* near us when a neighbour reports at
least `hot_queue` invocations of it waiting, or when a draining neighbour has it warm (its work is
about to move). For a hot function this node, if it has a free slot, keeps up to `max_prewarm`
instances warm (more the longer the neighbour's queue), so forwarded invocations start warm. When no
neighbour has shown it hot for `cool_after_s`, the planner lets those instances go. It only plans;
the node's placement adapter calls the executor's `prewarm`/`release`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from p2pfaas.placement.view import PeerLoad


@dataclass(frozen=True)
class Prewarm:
    digest: str
    count: int


@dataclass(frozen=True)
class Release:
    digest: str


Action = Prewarm | Release


@dataclass
class PrewarmPlanner:
    hot_queue: int = 2
    max_prewarm: int = 2
    cool_after_s: float = 30.0
    _last_hot: dict[str, float] = field(default_factory=dict)
    _prewarmed: dict[str, int] = field(default_factory=dict)  # digest -> instances we asked for

    def plan(
        self, now: float, loads: Iterable[PeerLoad], *, free_slots: int, warm: dict[str, int]
    ) -> list[Action]:
        hot: dict[str, int] = {}
        for load in loads:
            for digest, queued in load.queued.items():
                if queued >= self.hot_queue:
                    hot[digest] = max(hot.get(digest, 0), queued)
            if load.draining:
                for digest, instances in load.warm.items():
                    if instances > 0:
                        hot[digest] = max(hot.get(digest, 0), instances)
        actions: list[Action] = []
        for digest, pressure in sorted(hot.items(), key=lambda item: -item[1]):
            self._last_hot[digest] = now
            want = min(self.max_prewarm, max(1, pressure // 2))
            if free_slots > 0 and warm.get(digest, 0) < want and self._prewarmed.get(digest, 0) < want:
                actions.append(Prewarm(digest, want))
                self._prewarmed[digest] = want
                free_slots -= 1
        for digest in list(self._prewarmed):
            if now - self._last_hot.get(digest, float("-inf")) > self.cool_after_s:
                actions.append(Release(digest))
                del self._prewarmed[digest]
                self._last_hot.pop(digest, None)
        return actions

    @property
    def prewarmed(self) -> dict[str, int]:
        return dict(self._prewarmed)
