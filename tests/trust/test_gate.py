"""The gate on a replica's receipt: pay the majority, refuse dissent, hold until the vote."""

from __future__ import annotations


def test_the_gate_pays_the_majority_refuses_dissent_and_holds_until_the_vote() -> None:
    from p2pfaas.trust.gate import Gate, VerdictRow, gate_replica

    agreed, dissent, inconclusive = (
        VerdictRow("a", "agreed"),
        VerdictRow("a", "dissent"),
        VerdictRow("a", "open"),
    )
    assert gate_replica("a", agreed, first_seen_at=0, now=1) is Gate.PAY
    assert gate_replica("a", inconclusive, first_seen_at=0, now=1) is Gate.PAY
    assert gate_replica("a", dissent, first_seen_at=0, now=1) is Gate.OUTVOTED
    assert gate_replica("b", agreed, first_seen_at=0, now=1) is Gate.OUTVOTED  # not the node that was voted
    assert gate_replica("a", None, first_seen_at=100, now=150, hold_s=60) is Gate.HOLD
    assert gate_replica("a", None, first_seen_at=100, now=160, hold_s=60) is Gate.PAY
    assert gate_replica("a", dissent, first_seen_at=0, now=10**9) is Gate.OUTVOTED  # a vote is final
