"""Gossip and placement messages (codec tags 100-119).

`LoadReport` is what a node says about its own load: signed by the node and numbered, so a relayed
report can be checked and an old one never overwrites a newer one. `GossipExchange` carries the
sender's report plus a few fresh reports it relays (each still signed by its origin). `ForwardRequest`
wraps a lessee's signed `InvokeRequest` unchanged, with the hop count, signed by the forwarding node.
`DrainRequest` is signed with the node's own key by its operator (`p2pfaas node drain`). `JobSubmit`,
`JobPoll` and `JobStatus` are the asynchronous-invocation API: only the lessee whose key signed a
job's request may read its state, by a fresh `JobPoll` signed with that key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from p2pfaas.codec import KiB, MaxLen, Message, message
from p2pfaas.messages import (
    MAX_DELEGATIONS,
    Delegation,
    InvokeRequest,
    InvokeResult,
    PublicKeyBytes,
    SignatureBytes,
)

MAX_WARM_ENTRIES = 64
MAX_RELAYED_REPORTS = 16
MAX_HOPS = 8


@message(100)
@dataclass(frozen=True)
class FunctionLoad(Message):
    """One function's state on the reporting node: warm instances and invocations waiting."""

    digest: Annotated[str, MaxLen(64)]
    warm: int
    queued: int

    def __post_init__(self) -> None:
        if self.warm < 0 or self.queued < 0:
            raise ValueError("warm and queued counts must not be negative")


@message(101)
@dataclass(frozen=True)
class LoadReport(Message):
    """A node's signed, sequence-numbered load: the unit of gossip."""

    url: Annotated[str, MaxLen(256)]
    seq: int  # strictly increasing per node (the node's start time in ms plus a counter)
    issued_at: float  # the node's wall clock, for display; ageing uses the receiver's clock
    capacity: int  # concurrent slots
    free_slots: int
    queue_length: int
    draining: bool
    functions: Annotated[tuple[FunctionLoad, ...], MaxLen(MAX_WARM_ENTRIES)]
    signer: PublicKeyBytes
    signature: SignatureBytes

    def __post_init__(self) -> None:
        if self.seq < 0:
            raise ValueError(f"seq must not be negative, got {self.seq}")
        # free_slots > capacity is not rejected here: the view clamps it (a peer's claim is a hint).
        if min(self.capacity, self.free_slots, self.queue_length) < 0:
            raise ValueError("capacity, free_slots and queue_length must not be negative")


@message(102)
@dataclass(frozen=True)
class GossipExchange(Message):
    """Push-pull gossip: the sender's own report, and fresh reports of others that it relays."""

    sender: LoadReport
    relayed: Annotated[tuple[LoadReport, ...], MaxLen(MAX_RELAYED_REPORTS)]
    # How long the relayer had held each relayed report, in ms, so the receiver ages it correctly
    # without comparing wall clocks across machines.
    relayed_age_ms: Annotated[tuple[int, ...], MaxLen(MAX_RELAYED_REPORTS)]


@message(103)
@dataclass(frozen=True)
class ForwardRequest(Message):
    """A node passes a lessee's invocation on. `must_accept=False` lets the receiver refuse (503)
    when it has no free slot, so the sender can try elsewhere."""

    request: InvokeRequest
    hops: int  # forwards so far, including this one
    must_accept: bool
    signer: PublicKeyBytes  # the forwarding node
    signature: SignatureBytes
    # A paid request's delegations so far, the last from the forwarding node to the receiver
    # (`p2pfaas.tickets`): what lets the receiver's receipt be paid to it.
    chain: Annotated[tuple[Delegation, ...], MaxLen(MAX_DELEGATIONS)] = ()

    OPTIONAL_TAIL: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if not 1 <= self.hops <= MAX_HOPS:
            raise ValueError(f"hops {self.hops} outside 1..{MAX_HOPS}")


@message(104)
@dataclass(frozen=True)
class DrainRequest(Message):
    """Ask a node to drain, signed with that node's own key (only its operator holds it)."""

    drain_deadline_s: float  # how long in-flight work may take before the node exits anyway
    issued_at: float  # the operator's wall clock; the node refuses stale requests (replays)
    signer: PublicKeyBytes
    signature: SignatureBytes

    def __post_init__(self) -> None:
        if not 0 < self.drain_deadline_s <= 3600:
            raise ValueError(f"drain_deadline_s {self.drain_deadline_s} outside (0, 3600]")


@message(105)
@dataclass(frozen=True)
class JobSubmit(Message):
    """An asynchronous invocation: run `request`, keep the result for polling, and optionally POST the
    signed `InvokeResult` to `callback_url`."""

    request: InvokeRequest
    callback_url: Annotated[str, MaxLen(1 * KiB)]  # "" for none

    def __post_init__(self) -> None:
        if self.callback_url and not self.callback_url.startswith(("http://", "https://")):
            raise ValueError("callback_url must be an http(s) URL")


JOB_STATES = ("queued", "running", "done", "failed")


@message(106)
@dataclass(frozen=True)
class JobStatus(Message):
    """What a node knows about a submitted invocation. `result` is set once it is done or failed
    with a node-signed result; `error` explains a failure that produced no result."""

    invocation_id: Annotated[str, MaxLen(64)]
    job_state: Annotated[str, MaxLen(16)]
    result: InvokeResult | None
    error: Annotated[str, MaxLen(4 * KiB)]
    # What became of the callback: "" (none asked), "pending", "delivered", "refused: why" (not
    # allowed, never retried) or "failed: why" (after the node's bounded tries). Added later: left
    # off the wire when empty.
    callback: Annotated[str, MaxLen(1 * KiB)] = ""

    OPTIONAL_TAIL: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.job_state not in JOB_STATES:
            raise ValueError(f"job state {self.job_state!r} is not one of {JOB_STATES}")


@message(107)
@dataclass(frozen=True)
class JobPoll(Message):
    """The submitting lessee asks node `node_id` for job `invocation_id`'s state (`POST /v1/jobs/{id}`).

    Signed by the key that signed the job's `InvokeRequest`: the invocation id alone, which every
    node that forwarded or replicated the call knows, reads nothing. `issued_at` (the lessee's wall
    clock) must be within the node's skew, and `node_id` names the node asked, so a poll that one
    node saw cannot be replayed to another later or elsewhere.
    """

    invocation_id: Annotated[str, MaxLen(64)]
    node_id: Annotated[str, MaxLen(40)]
    issued_at: float
    signer: PublicKeyBytes  # the lessee's key
    signature: SignatureBytes

    def __post_init__(self) -> None:
        if not self.invocation_id:
            raise ValueError("a job poll names its invocation")
