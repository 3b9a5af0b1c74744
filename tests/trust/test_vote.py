"""The replication vote: quorum and strict majority, one replica more at a time, a cap, one vote per node."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.errors import LocalError
from p2pfaas.trust.vote import Agreed, Ballot, DuplicateVoter, Inconclusive, NeedMore, Vote

GOOD, BAD, UGLY = b"g" * 32, b"b" * 32, b"u" * 32


def ballots(*hashes: bytes) -> list[Ballot]:
    return [Ballot(f"node{i}", h) for i, h in enumerate(hashes)]


def test_an_empty_vote_asks_for_a_quorum() -> None:
    assert Vote(quorum=2).decide() == NeedMore(2)
    assert Vote(quorum=3, max_replicas=5).decide() == NeedMore(3)


def test_two_agreeing_replicas_decide() -> None:
    decision = Vote().decide_on(ballots(GOOD, GOOD))
    assert decision == Agreed(GOOD, frozenset({"node0", "node1"}), frozenset())


def test_a_disagreement_adds_one_replica_and_the_majority_wins() -> None:
    vote = Vote(quorum=2, max_replicas=5)
    assert vote.decide_on(ballots(GOOD, BAD)) == NeedMore(1)
    vote.cast(Ballot("node2", GOOD))
    assert vote.decide() == Agreed(GOOD, frozenset({"node0", "node2"}), frozenset({"node1"}))


def test_three_different_answers_need_one_more_that_agrees() -> None:
    vote = Vote(quorum=2, max_replicas=5)
    assert vote.decide_on(ballots(GOOD, BAD, UGLY)) == NeedMore(1)
    vote.cast(Ballot("node3", GOOD))
    decision = vote.decide()  # two honest answers beat two different wrong ones
    assert isinstance(decision, Agreed) and decision.dissenting == {"node1", "node2"}


def test_colluders_tied_with_the_honest_answer_need_a_tie_breaker() -> None:
    vote = Vote(quorum=2, max_replicas=5)
    assert vote.decide_on(ballots(GOOD, BAD, GOOD, BAD)) == NeedMore(1)
    vote.cast(Ballot("node4", GOOD))
    decision = vote.decide()
    assert isinstance(decision, Agreed) and decision.result_sha256 == GOOD


def test_the_cap_makes_a_hopeless_vote_inconclusive() -> None:
    assert Vote(quorum=2, max_replicas=3).decide_on(ballots(GOOD, BAD, UGLY)) == Inconclusive(3, 1)
    assert Vote(quorum=2, max_replicas=4).decide_on(ballots(GOOD, BAD, GOOD, BAD)) == Inconclusive(4, 2)
    vote = Vote(quorum=2, max_replicas=2)
    assert vote.decide_on(ballots(GOOD, BAD)) == Inconclusive(2, 1)


def test_replicas_that_never_answered_count_against_the_cap() -> None:
    vote = Vote(quorum=2, max_replicas=3)
    vote.cast(Ballot("a", GOOD))
    vote.no_answer()
    assert vote.decide() == NeedMore(1)
    vote.no_answer()
    assert vote.decide() == Inconclusive(1, 1)


def test_a_node_votes_once() -> None:
    vote = Vote()
    vote.cast(Ballot("a", GOOD))
    with pytest.raises(DuplicateVoter):
        vote.cast(Ballot("a", GOOD))


def test_quorum_one_is_a_single_trusted_run() -> None:
    assert Vote(quorum=1, max_replicas=1).decide_on(ballots(GOOD)) == Agreed(
        GOOD, frozenset({"node0"}), frozenset()
    )
    with pytest.raises(LocalError):
        Vote(quorum=3, max_replicas=2)


@given(st.lists(st.sampled_from([GOOD, BAD, UGLY]), max_size=9), st.integers(1, 4), st.integers(0, 5))
def test_decisions_are_sound(hashes: list[bytes], quorum: int, extra: int) -> None:
    max_replicas = max(quorum + extra, len(hashes), 1)
    vote = Vote(quorum=quorum, max_replicas=max_replicas)
    decision = vote.decide_on(ballots(*hashes))
    if isinstance(decision, Agreed):
        assert len(decision.agreeing) >= quorum
        assert all(
            len(decision.agreeing) > hashes.count(h) for h in set(hashes) if h != decision.result_sha256
        )
        assert decision.agreeing | decision.dissenting == vote.voters
        assert not decision.agreeing & decision.dissenting
    elif isinstance(decision, NeedMore):
        assert decision.count >= 1 and len(hashes) + decision.count <= max_replicas
        # Asking for exactly that many, all agreeing with the leader, decides the vote.
        leader = max(set(hashes), key=hashes.count) if hashes else GOOD
        for i in range(decision.count):
            vote.cast(Ballot(f"extra{i}", leader))
        assert isinstance(vote.decide(), Agreed)
    else:
        assert isinstance(decision, Inconclusive)
