"""Trust's wire messages (codec tags 120-124): replication reports, verdicts, reputations, advert lies.

A `ReplicationReport` carries the node-signed receipts of one replicated invocation, signed by the
lessee whose key they name; the anchor decides the vote itself from the receipts' result hashes
(it never takes the lessee's word for who won). An `AdvertLieReport` carries two things the same
node signed, its capacity advert and a receipt, whose prices contradict each other.
These classes only bound sizes; checks are the anchor's (`p2pfaas/anchor/reputation.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from p2pfaas.codec import MaxLen, Message, message
from p2pfaas.messages import PublicKeyBytes, Receipt, SignatureBytes

MAX_REPORTED_REPLICAS = 16
NodeIds = Annotated[tuple[Annotated[str, MaxLen(40)], ...], MaxLen(MAX_REPORTED_REPLICAS)]


@message(120)
@dataclass(frozen=True)
class ReplicationReport(Message):
    """The receipts of every replica of invocation group `group` that answered (signed by the lessee)."""

    group: Annotated[str, MaxLen(32)]
    quorum: int
    receipts: Annotated[tuple[Receipt, ...], MaxLen(MAX_REPORTED_REPLICAS)]
    signer: PublicKeyBytes
    signature: SignatureBytes


@message(121)
@dataclass(frozen=True)
class ReplicationVerdict(Message):
    """The anchor's decision: `outcome` "agreed" (with the winning hash) or "inconclusive"."""

    group: Annotated[str, MaxLen(32)]
    outcome: Annotated[str, MaxLen(16)]
    result_sha256: Annotated[bytes, MaxLen(32)]
    agreeing: NodeIds
    dissenting: NodeIds
    first_report: bool  # False: this group was reported before, and that report stands


@message(122)
@dataclass(frozen=True)
class NodeReputation(Message):
    node_id: str
    agreements: int
    disagreements: int
    consecutive_valid: int
    lies: int
    trust_probability: float  # the chance an invocation on this node runs without a replica


@message(123)
@dataclass(frozen=True)
class ReputationList(Message):
    nodes: Annotated[tuple[NodeReputation, ...], MaxLen(4096)]


@message(124)
@dataclass(frozen=True)
class AdvertLieReport(Message):
    """`advert`: the node's encoded, signed DHT record (p2pfaas.dht.wire.Record) with its prices."""

    advert: Annotated[bytes, MaxLen(1024)]
    receipt: Receipt
