"""BOINC adaptive replication: new nodes are always checked, long records at a falling rate; lies cost."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from p2pfaas.trust.adaptive import AdaptivePolicy, Record

POLICY = AdaptivePolicy(threshold=10, min_check_rate=0.0)  # BOINC's rule exactly


def spot_check_rate(record: Record, n: int = 20_000) -> float:
    rng = random.Random(7)
    return sum(POLICY.should_replicate(record, rng) for _ in range(n)) / n


def test_new_and_short_records_are_always_replicated() -> None:
    assert POLICY.trust_probability(Record()) == 0.0
    assert POLICY.trust_probability(Record(agreements=9, consecutive_valid=9)) == 0.0
    rng = random.Random(1)
    assert all(POLICY.should_replicate(Record(agreements=9, consecutive_valid=9), rng) for _ in range(200))


def test_the_spot_check_rate_falls_as_one_over_the_streak() -> None:
    rates = [spot_check_rate(Record(agreements=cv, consecutive_valid=cv)) for cv in (10, 100, 1000)]
    assert abs(rates[0] - 0.1) < 0.01 and abs(rates[1] - 0.01) < 0.003 and rates[2] < 0.003
    assert rates[0] > rates[1] > rates[2] > 0


def test_the_floor_keeps_long_records_checked() -> None:
    floored = AdaptivePolicy(min_check_rate=0.05)
    assert floored.trust_probability(Record(agreements=10, consecutive_valid=10)) == 0.9
    assert floored.trust_probability(Record(agreements=10**6, consecutive_valid=10**6)) == 0.95
    rng = random.Random(3)
    rate = sum(
        floored.should_replicate(Record(agreements=10**6, consecutive_valid=10**6), rng)
        for _ in range(20_000)
    )
    assert abs(rate / 20_000 - 0.05) < 0.01


def test_one_disagreement_resets_the_streak_and_agreements_rebuild_it() -> None:
    record = Record()
    for _ in range(12):
        record = POLICY.after_vote(record, agreed=True)
    assert (record.agreements, record.consecutive_valid) == (12, 12)
    record = POLICY.after_vote(record, agreed=False)
    assert (record.agreements, record.disagreements, record.consecutive_valid) == (12, 1, 0)
    assert POLICY.trust_probability(record) == 0.0


def test_repeat_offenders_must_earn_trust_back_for_longer() -> None:
    policy = AdaptivePolicy(repeat_penalty=10)
    record = Record(agreements=30, consecutive_valid=30)
    record = policy.after_vote(record, agreed=False)
    assert record.consecutive_valid == 0  # a first disagreement: BOINC's reset
    record = policy.after_vote(record, agreed=False)
    assert record.consecutive_valid == -10
    record = policy.after_vote(record, agreed=False)
    assert record.consecutive_valid == -30
    for _ in range(39):
        record = policy.after_vote(record, agreed=True)
    assert policy.trust_probability(record) == 0.0  # 39 agreements later: a streak of 9
    assert policy.trust_probability(policy.after_vote(record, agreed=True)) > 0.0


def test_a_lie_costs_more_than_a_disagreement() -> None:
    trusted = Record(agreements=50, consecutive_valid=50)
    liar = POLICY.after_lie(trusted)
    assert liar.lies == 1 and liar.consecutive_valid == -10
    for _ in range(19):
        liar = POLICY.after_vote(liar, agreed=True)
    assert POLICY.trust_probability(liar) == 0.0  # 20 agreements later, still below the threshold
    liar = POLICY.after_vote(liar, agreed=True)
    assert POLICY.trust_probability(liar) > 0.0


@given(st.lists(st.sampled_from(["agree", "dissent", "lie"]), max_size=60))
def test_records_stay_consistent(events: list[str]) -> None:
    record = Record()
    for event in events:
        before = record
        record = (
            POLICY.after_lie(record) if event == "lie" else POLICY.after_vote(record, agreed=event == "agree")
        )
        assert record.consecutive_valid <= record.agreements
        if event == "agree":
            assert record.consecutive_valid == before.consecutive_valid + 1
        else:
            assert record.consecutive_valid <= 0
        assert 0.0 <= POLICY.trust_probability(record) < 1.0
    assert record.agreements == events.count("agree") and record.disagreements == events.count("dissent")
