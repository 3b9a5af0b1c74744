"""A node's track record, and how often to check it: BOINC's adaptive replication.

BOINC keeps, per host, CV = the number of consecutive replicated results that were found valid;
it is incremented by each agreement and zeroed by each disagreement. A host with CV below a
threshold (10) is never trusted alone; above it, a job runs unreplicated with probability
1 - 1/CV, so the spot-check rate falls as 1/CV and an honest network pays little for verification
(Anderson, "BOINC: a platform for volunteer computing", J. Grid Computing 2020, section 6.2;
BOINC wiki, AdaptiveReplication).

One change: a floor on the check rate (`min_check_rate`, 5 % by default; 0 is BOINC's rule exactly),
measured in bench/bench_trust.py: without it, a paid volunteer who lies on one call in ten after a
long honest streak has most of its lies accepted unchecked.

Here the same rule drives the client (`should_replicate`), and the anchor applies `after_vote`
and `after_lie` to the record it keeps in its `reputation` table. A node caught with a lying advert
(it charged more than the prices it advertised) loses its whole streak like a dissenter, and is
distrusted for a while longer (`lie_penalty`): its record must be rebuilt from zero plus the penalty.
Sans-I/O: the caller passes in the record, the random generator and the outcome.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

__all__ = ["AdaptivePolicy", "Record"]


@dataclass(frozen=True)
class Record:
    """What the anchor knows of a node's results."""

    agreements: int = 0
    disagreements: int = 0
    consecutive_valid: int = 0
    lies: int = 0

    def __post_init__(self) -> None:
        assert min(self.agreements, self.disagreements, self.lies) >= 0, self
        assert self.consecutive_valid <= self.agreements, self  # a streak is made of agreements


@dataclass(frozen=True)
class AdaptivePolicy:
    """BOINC's parameters: trust alone only after `threshold` consecutive agreements."""

    threshold: int = 10
    lie_penalty: int = 10  # a lie sets the streak this far below zero
    # BOINC's rule checks a node with a streak of CV at rate 1/CV, which lets a node that lies
    # rarely (after a long honest streak) go unchecked almost always; volunteers here are paid,
    # so they have a motive BOINC's do not. A floor keeps every node checked at least this often.
    min_check_rate: float = 0.05
    repeat_penalty: int = 10  # 0: BOINC's rule exactly (every disagreement only zeroes the streak)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_check_rate <= 1.0 or self.threshold < 1:
            raise ValueError(f"bad adaptive policy: {self}")

    def trust_probability(self, record: Record) -> float:
        """The chance that an invocation on this node runs without a replica: 0, or 1 - 1/CV (floored)."""
        cv = record.consecutive_valid
        if cv < self.threshold:
            return 0.0
        return min(1.0 - 1.0 / cv, 1.0 - self.min_check_rate)

    def should_replicate(self, record: Record, rng: random.Random) -> bool:
        """Whether to check this invocation with a second node (a spot check, for trusted nodes)."""
        return rng.random() >= self.trust_probability(record)

    def after_vote(self, record: Record, *, agreed: bool) -> Record:
        """The record after a decided vote in which the node agreed with the majority, or not."""
        if agreed:
            return replace(
                record, agreements=record.agreements + 1, consecutive_valid=record.consecutive_valid + 1
            )
        # A first disagreement zeroes the streak (BOINC: a flaky CPU); each further one also sets it
        # `repeat_penalty` further below zero per disagreement so far, so a node that lies now and
        # then must earn back longer each time it is caught.
        penalty = self.repeat_penalty * record.disagreements
        return replace(
            record,
            disagreements=record.disagreements + 1,
            consecutive_valid=min(0, record.consecutive_valid) - penalty,
        )

    def after_lie(self, record: Record) -> Record:
        """The record after the node was proven to have charged beyond its own advert."""
        return replace(
            record,
            lies=record.lies + 1,
            consecutive_valid=min(0, record.consecutive_valid) - self.lie_penalty,
        )
