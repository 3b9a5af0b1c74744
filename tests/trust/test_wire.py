"""Trust's wire messages (`p2pfaas.trust.wire`): reports, verdicts and reputations round-trip, and a
report naming more replicas than it may is refused on decoding."""

from __future__ import annotations

import pytest

from p2pfaas import codec
from p2pfaas.errors import DecodeError
from p2pfaas.trust.wire import (
    MAX_REPORTED_REPLICAS,
    NodeReputation,
    ReplicationReport,
    ReplicationVerdict,
    ReputationList,
)
from tests.wirekit import rewired


def test_verdicts_and_reputations_round_trip() -> None:
    verdict = ReplicationVerdict("g" * 32, "agreed", b"h" * 32, ("a" * 40, "b" * 40), ("c" * 40,), True)
    assert codec.decode_as(ReplicationVerdict, codec.encode(verdict)) == verdict
    reputations = ReputationList((NodeReputation("a" * 40, 5, 1, 3, 0, 0.25),))
    assert codec.decode_as(ReputationList, codec.encode(reputations)) == reputations


def test_a_verdict_naming_more_nodes_than_a_report_may_hold_is_refused() -> None:
    verdict = ReplicationVerdict("g" * 32, "agreed", b"h" * 32, (), (), True)
    too_many = ["a" * 40] * (MAX_REPORTED_REPLICAS + 1)
    with pytest.raises(DecodeError):
        codec.decode_as(ReplicationVerdict, rewired(verdict, "agreeing", too_many))
    report = ReplicationReport("g" * 32, 2, (), b"k" * 32, b"s" * 64)
    assert codec.decode_as(ReplicationReport, codec.encode(report)) == report
    with pytest.raises(DecodeError):
        codec.decode_as(ReplicationReport, rewired(report, "group", "g" * 33))
