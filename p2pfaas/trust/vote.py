"""The vote of a replicated invocation: same input on distinct nodes, results compared by hash.

`Vote` is fed one `Ballot` per replica that answered (its node and the hash of what it returned;
an error counts as a result too, so a deterministic function that always raises is agreed on) and
says what to do next (`decide()`):

- `Agreed`: one result has at least `quorum` ballots and more ballots than any other result. Its
  voters agreed; everyone else dissented. (Not a strict majority of all ballots: two honest
  answers against three different wrong ones must win. Colluders who agree on one wrong answer
  gain nothing by this: to win they need more votes than the honest answer either way.)
- `NeedMore(n)`: no result has won yet, and `n` more ballots could still make one win. The
  smallest such `n` is asked for, so an honest network pays for `quorum` replicas and a
  disagreement adds one replica at a time (BOINC's validator: a result is valid once `min_quorum`
  results agree; replicas are added until then, or until a cap is reached).
- `Inconclusive`: the cap on replicas leaves no way for any result to win. Nobody is paid.

A node has one vote: a second ballot from the same node is refused (`DuplicateVoter`), so
replicas that a router forwarded to the same machine cannot outvote anyone.
Sans-I/O: no network, no clock, no randomness.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from p2pfaas.errors import LocalError

__all__ = ["Agreed", "Ballot", "Decision", "DuplicateVoter", "Inconclusive", "NeedMore", "Vote"]

DEFAULT_QUORUM = 2
DEFAULT_MAX_REPLICAS = 5


class DuplicateVoter(LocalError):
    """A node answered a second replica of the same invocation; its second answer has no vote."""


@dataclass(frozen=True)
class Ballot:
    node_id: str
    result_sha256: bytes  # of (ok flag, output) as `result_hash` computes it


@dataclass(frozen=True)
class Agreed:
    result_sha256: bytes
    agreeing: frozenset[str]  # node ids
    dissenting: frozenset[str]


@dataclass(frozen=True)
class NeedMore:
    count: int


@dataclass(frozen=True)
class Inconclusive:
    ballots: int
    leading_votes: int


Decision = Agreed | NeedMore | Inconclusive


@dataclass
class Vote:
    """One replicated invocation's ballots. `quorum` >= 1; `max_replicas` >= `quorum` caps the cost."""

    quorum: int = DEFAULT_QUORUM
    max_replicas: int = DEFAULT_MAX_REPLICAS
    _ballots: dict[str, bytes] = field(default_factory=dict)
    _failed: int = 0  # replicas that gave no result (unreachable, refused): they use up the cap

    def __post_init__(self) -> None:
        if not 1 <= self.quorum <= self.max_replicas:
            raise LocalError(f"need 1 <= quorum ({self.quorum}) <= max_replicas ({self.max_replicas})")

    @property
    def voters(self) -> frozenset[str]:
        return frozenset(self._ballots)

    @property
    def spent(self) -> int:
        """Replicas used so far, answered or not."""
        return len(self._ballots) + self._failed

    def cast(self, ballot: Ballot) -> None:
        if ballot.node_id in self._ballots:
            raise DuplicateVoter(f"node {ballot.node_id[:12]} has voted on this invocation already")
        self._ballots[ballot.node_id] = ballot.result_sha256

    def no_answer(self) -> None:
        """A replica was sent but no result came back; it counts against the cap."""
        self._failed += 1

    def decide(self) -> Decision:
        ranked = Counter(self._ballots.values()).most_common(2)
        top = ranked[0][1] if ranked else 0
        second = ranked[1][1] if len(ranked) > 1 else 0
        if top >= self.quorum and top > second:
            winner = ranked[0][0]
            agreeing = frozenset(n for n, h in self._ballots.items() if h == winner)
            return Agreed(winner, agreeing, frozenset(self._ballots) - agreeing)
        # The fewest more ballots with which the leader could win, if they all agreed with it:
        # top + k >= quorum and top + k > second.
        more = max(self.quorum - top, second - top + 1, 1)
        if self.spent + more > self.max_replicas:
            return Inconclusive(len(self._ballots), top)
        return NeedMore(more)

    def decide_on(self, ballots: list[Ballot]) -> Decision:
        """Cast `ballots` and decide: the anchor's one-shot use on a reported group."""
        for ballot in ballots:
            self.cast(ballot)
        return self.decide()
