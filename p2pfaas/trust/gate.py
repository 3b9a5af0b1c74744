"""Which replica receipts the ledger may pay now: the rule behind the anchor's settlement gate.

A replica's receipt is paid when its vote says so: the node agreed with the majority, or the
vote was inconclusive (no majority to prove anyone wrong; the lessee, who chose the cap, bears
that cost). It is refused for good when the node was outvoted, or when the vote names another
node for that replica (a receipt for a replica this node did not run in the vote). A receipt that
comes before its vote is held; the node resends it, and after `hold_s` from when the anchor
first saw it (the anchor's clock, not the node's word) it is paid as if no vote had been asked
for, so a lessee who never reports cannot keep an honest node from its pay.
Sans-I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DEFAULT_HOLD_S", "Gate", "Verdict", "VerdictRow", "gate_replica"]

DEFAULT_HOLD_S = 300.0


class Verdict(enum.StrEnum):
    AGREED = "agreed"
    DISSENT = "dissent"
    OPEN = "open"  # the vote was inconclusive: nobody was proven wrong


class Gate(enum.Enum):
    PAY = "pay"
    HOLD = "hold"
    OUTVOTED = "outvoted"


@dataclass(frozen=True)
class VerdictRow:
    node_id: str
    verdict: str


def gate_replica(
    node_id: str,
    verdict: VerdictRow | None,
    *,
    first_seen_at: float,
    now: float,
    hold_s: float = DEFAULT_HOLD_S,
) -> Gate:
    if verdict is not None:
        if verdict.node_id == node_id and verdict.verdict in (Verdict.AGREED, Verdict.OPEN):
            return Gate.PAY
        return Gate.OUTVOTED
    if now - first_seen_at >= hold_s:
        return Gate.PAY
    return Gate.HOLD
