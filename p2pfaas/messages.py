"""Every message that crosses the wire, as frozen dataclasses registered with the codec.

Tags are never reused: a retired message keeps its number. Messages that a peer could forge carry
`signer` (a raw Ed25519 public key) and `signature` as their last two fields (save an optional tail
added later, see `Receipt.request_sha256`); `signing.py` signs and
verifies them over the encoding with an empty signature. Semantic checks that need no key (formats,
ranges) live in `__post_init__`, so a message that decodes is well-formed.

HTTP routes that carry these messages are listed in `p2pfaas/anchor/app.py` and `p2pfaas/node/app.py`.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Annotated, ClassVar

from p2pfaas.codec import KiB, MaxLen, Message, MiB, message
from p2pfaas.money import check_amount

MAX_PAYLOAD_BYTES = 6 * MiB  # like a commercial FaaS's synchronous payload cap
MAX_ARCHIVE_BYTES = 8 * MiB
MAX_TRACEBACK_CHARS = 64 * KiB
MAX_LOG_CHARS = 64 * KiB + 256  # a call's printed output, as the runtime caps it, and its truncation note
MAX_DELEGATIONS = 4  # forwards one invocation may take (the router's hop limit is lower)

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_HEX_NODE_ID = re.compile(r"[0-9a-f]{40}")

PublicKeyBytes = Annotated[bytes, MaxLen(32)]
SignatureBytes = Annotated[bytes, MaxLen(64)]


def _check_digest(digest: str) -> None:
    if not _HEX_DIGEST.fullmatch(digest):
        raise ValueError(f"digest must be 64 lowercase hex characters, got {digest[:80]!r}")


def _check_node_id(node_id: str) -> None:
    if not _HEX_NODE_ID.fullmatch(node_id):
        raise ValueError(f"node id must be 40 lowercase hex characters, got {node_id[:80]!r}")


# --- generic replies ----------------------------------------------------------------------------


@message(1)
@dataclass(frozen=True)
class ErrorReply(Message):
    """The body of every non-2xx HTTP answer: a stable `code` and a human-readable `reason`."""

    code: str  # e.g. "malformed", "bad-signature", "unknown-function", "busy", "internal"
    reason: Annotated[str, MaxLen(4 * KiB)]


@message(2)
@dataclass(frozen=True)
class Ack(Message):
    """A positive answer with nothing more to say than `detail`."""

    detail: str = ""


# --- functions and bundles ----------------------------------------------------------------------


@message(10)
@dataclass(frozen=True)
class Manifest(Message):
    """What a function is and the limits it runs under. Checked fully in `bundle.validate_manifest`."""

    name: Annotated[str, MaxLen(64)]
    version: Annotated[str, MaxLen(32)]
    runtime: Annotated[str, MaxLen(32)]
    handler: Annotated[str, MaxLen(128)]  # "module:function"
    memory_mb: int
    timeout_s: float
    deterministic: bool
    # Invocations one instance may serve at once (the function declares itself thread-safe).
    # Added later: left off the wire at 1, so bundles signed before it keep their signatures.
    concurrency: int = 1
    # Hosts the function may reach ("api.example.org:443"), through the node's egress proxy and only
    # on nodes whose volunteers lend network (p2pfaas/exec/egress.py); none: no network at all.
    egress: Annotated[tuple[Annotated[str, MaxLen(260)], ...], MaxLen(16)] = ()

    OPTIONAL_TAIL: ClassVar[int] = 2


@message(11)
@dataclass(frozen=True)
class BundleHeader(Message):
    """A manifest bound to its archive's SHA-256, signed by the lessee who owns the function."""

    manifest: Manifest
    digest: str  # hex SHA-256 of the archive: the bundle's address
    size_bytes: int
    signer: PublicKeyBytes
    signature: SignatureBytes

    def __post_init__(self) -> None:
        _check_digest(self.digest)
        if not 0 < self.size_bytes <= MAX_ARCHIVE_BYTES:
            raise ValueError(f"bundle size {self.size_bytes} outside 1..{MAX_ARCHIVE_BYTES}")


@message(12)
@dataclass(frozen=True)
class Bundle(Message):
    """A signed header and its archive: what a lessee uploads and a node fetches."""

    header: BundleHeader
    archive: Annotated[bytes, MaxLen(MAX_ARCHIVE_BYTES)]


@message(13)
@dataclass(frozen=True)
class FunctionInfo(Message):
    """The current version of a lessee's function, by name."""

    owner_key_id: str
    name: Annotated[str, MaxLen(64)]
    header: BundleHeader

    def __post_init__(self) -> None:
        _check_node_id(self.owner_key_id)


# --- identities ---------------------------------------------------------------------------------


@message(14)
@dataclass(frozen=True)
class FunctionVersion(Message):
    """One deployed version of a lessee's function (`current`: the one its name points at)."""

    name: Annotated[str, MaxLen(200)]
    version: Annotated[str, MaxLen(64)]
    digest: Annotated[str, MaxLen(64)]
    runtime: Annotated[str, MaxLen(64)]
    at: float  # when it was deployed (a list of versions) or last pointed at (a list of functions)
    current: bool


@message(16)
@dataclass(frozen=True)
class FunctionChange(Message):
    """The owner's signed word to point its function `name` at deployed `version` (a rollback, or a
    roll forward), or with `version` "", to remove the name (invoking it is then NotFound). The
    anchor refuses one issued before the function last changed, so a replay cannot undo a later
    deploy or change, and one not fresh (+-300 s)."""

    name: Annotated[str, MaxLen(200)]
    version: Annotated[str, MaxLen(64)]
    issued_at: float
    signer: PublicKeyBytes  # the function's owner (its lessee key)
    signature: SignatureBytes


@message(137)
@dataclass(frozen=True)
class RevokedBundles(Message):
    """`GET /v1/revoked?after=SEQ` on the anchor: bundles whose owner removed their function, each
    with its place in the order revoked (`seqs`, ascending). Nodes drop them and run them no more.
    Public: a digest says nothing but that its function is gone."""

    seqs: Annotated[tuple[int, ...], MaxLen(1000)]
    digests: Annotated[tuple[str, ...], MaxLen(1000)]


@message(15)
@dataclass(frozen=True)
class FunctionList(Message):
    """A lessee's functions (their current versions), or one function's versions, oldest first."""

    functions: Annotated[tuple[FunctionVersion, ...], MaxLen(4096)]


@message(20)
@dataclass(frozen=True)
class LesseeKeyRegistration(Message):
    """A lessee proves it holds a key by signing this; the anchor records the public key."""

    label: Annotated[str, MaxLen(128)]
    issued_at: float  # the signer's clock, seconds; the anchor bounds its skew
    signer: PublicKeyBytes
    signature: SignatureBytes


@message(21)
@dataclass(frozen=True)
class NodeAnnouncement(Message):
    """A volunteer node says where it serves and what it lends; signed with its node key."""

    url: Annotated[str, MaxLen(256)]
    runtimes: Annotated[tuple[str, ...], MaxLen(16)]
    cores: float
    memory_mb: int
    executor: Annotated[str, MaxLen(64)]  # e.g. "docker" or "process (UNSANDBOXED)"
    issued_at: float
    signer: PublicKeyBytes
    signature: SignatureBytes


@message(22)
@dataclass(frozen=True)
class NodeInfo(Message):
    """A node as the anchor lists it (the anchor checked the announcement's signature)."""

    node_id: str
    public_key: PublicKeyBytes
    url: Annotated[str, MaxLen(256)]
    runtimes: Annotated[tuple[str, ...], MaxLen(16)]
    cores: float
    memory_mb: int

    def __post_init__(self) -> None:
        _check_node_id(self.node_id)


@message(23)
@dataclass(frozen=True)
class NodeList(Message):
    nodes: Annotated[tuple[NodeInfo, ...], MaxLen(4096)]


# --- invocations --------------------------------------------------------------------------------


@message(25)
@dataclass(frozen=True)
class Voucher(Message):
    """An anchor-signed spending authority: `lessee_key` may spend up to `budget_micro` until `expires_at`.

    Backed by an escrow hold in the ledger (issue #5); nodes verify it offline against the anchor's key.
    """

    voucher_id: Annotated[str, MaxLen(64)]
    lessee_key: PublicKeyBytes
    budget_micro: int  # micro-credits
    expires_at: float  # wall-clock seconds since the epoch
    signer: PublicKeyBytes  # the anchor's key
    signature: SignatureBytes

    def __post_init__(self) -> None:
        check_amount("voucher budget_micro", self.budget_micro)


@message(28)
@dataclass(frozen=True)
class SpendTicket(Message):
    """The lessee's word that it asked for invocation `invocation_id` of `request_sha256`, paid by
    `voucher_id`, from node `payee` (the entry node it sent the request to), at a node price of at
    most `max_price_micro`; signed by the lessee's key (the voucher's `lessee_key`).

    It rides in `InvokeRequest.ticket` and the node copies it into its `Receipt.ticket`, so the
    anchor, which never sees the payload the request's own signature covers, can still check that
    the lessee asked for what the node bills: a node that has seen a voucher cannot invent receipts
    against it, bill more than the lessee allowed, or bill a call another node ran (the anchor pays
    the payee, or the node the payee's signed `Delegation` chain ends at). Small on purpose (about
    250 bytes, one Ed25519 check at each end).
    """

    invocation_id: Annotated[str, MaxLen(64)]
    voucher_id: Annotated[str, MaxLen(64)]
    request_sha256: Annotated[bytes, MaxLen(32)]  # `request_sha256(request)` of the request it pays
    payee: str  # the entry node's id: the one node this ticket pays, unless it delegates
    max_price_micro: int  # the most the node may charge (the anchor's fee comes on top)
    signer: PublicKeyBytes  # the lessee's key
    signature: SignatureBytes

    def __post_init__(self) -> None:
        if not self.invocation_id or not self.voucher_id:
            raise ValueError("a spend ticket names its invocation and its voucher")
        if len(self.request_sha256) != 32:
            raise ValueError("a spend ticket's request hash is 32 bytes")
        _check_node_id(self.payee)
        check_amount("a spend ticket's price cap", self.max_price_micro, allow_zero=True)


@message(29)
@dataclass(frozen=True)
class Delegation(Message):
    """Node `signer` passes invocation `invocation_id` on to the node of id `to` (a forward).

    A forwarding node signs one per forward; the executing node copies the chain into its receipt,
    so the anchor can pay the node that ran the call and not the one that passed it on: a payee
    that delegated an invocation and also billed it has signed that it did not run it.
    """

    invocation_id: Annotated[str, MaxLen(64)]
    to: str  # the next node's id
    signer: PublicKeyBytes
    signature: SignatureBytes

    def __post_init__(self) -> None:
        _check_node_id(self.to)


@message(26)
@dataclass(frozen=True)
class Receipt(Message):
    """A node's signed account of one invocation it ran: what it used and what it charges.

    The anchor settles each `invocation_id` at most once, from the voucher's hold (issue #5).
    Usage is metered from the container's cgroup (issue #4), not from a wall clock.
    """

    invocation_id: Annotated[str, MaxLen(64)]
    digest: str
    lessee_key: PublicKeyBytes
    voucher_id: Annotated[str, MaxLen(64)]  # "" when the invocation carried no voucher
    ok: bool
    cpu_ms: int  # CPU time used, from the cgroup
    peak_memory_mb: int
    wall_ms: int
    price_micro: int  # what the node charges for this invocation, in micro-credits
    result_sha256: Annotated[bytes, MaxLen(32)]  # of the output bytes: lets replicas be compared
    issued_at: float
    signer: PublicKeyBytes  # the node's key
    signature: SignatureBytes
    # `request_sha256(request)` of what the node ran, so a vote can prove that its replicas had one
    # input. Added later, hence after the signature (it is signed all the same): left off the wire
    # when empty, so receipts signed before it keep their encodings and signatures.
    request_sha256: Annotated[bytes, MaxLen(32)] = b""
    # The lessee's ticket from the request (a paid invocation's proof for the anchor); later still.
    ticket: SpendTicket | None = None
    # The forwards that brought the request here, first (signed by the ticket's payee) to last
    # (naming this node); empty when the payee ran it itself.
    delegations: Annotated[tuple[Delegation, ...], MaxLen(MAX_DELEGATIONS)] = ()

    OPTIONAL_TAIL: ClassVar[int] = 3

    def __post_init__(self) -> None:
        _check_digest(self.digest)
        if min(self.cpu_ms, self.peak_memory_mb, self.wall_ms, self.price_micro) < 0:
            raise ValueError("receipt usage and price must not be negative")
        check_amount("receipt price_micro", self.price_micro, allow_zero=True)
        if len(self.request_sha256) not in (0, 32):
            raise ValueError("a receipt's request hash is 32 bytes (or absent)")


@message(32)
@dataclass(frozen=True)
class ChannelTicket(Message):
    """The lessee's cumulative word to node `node_id`: of the results it received from that node,
    paid by voucher `voucher_id`, it accepts `total_micro` of node price in all (fees on top).

    A payment channel per (voucher, node), `p2pfaas.channels`: the lessee signs a new ticket after
    each result it uses, `seq` one higher and `total_micro` grown by that receipt's price, so each
    ticket supersedes the last; the node keeps the latest and sends it with its receipts; the anchor
    pays the node's receipts on that voucher only up to the highest total the lessee signed. So what
    a node is paid is bound to the results the lessee accepted from that very node.
    """

    voucher_id: Annotated[str, MaxLen(64)]
    node_id: str  # the node the lessee received results from
    seq: int  # one per accepted receipt: a higher one supersedes
    total_micro: int  # node price accepted so far on this channel
    signer: PublicKeyBytes  # the lessee's key (the voucher's `lessee_key`)
    signature: SignatureBytes

    def __post_init__(self) -> None:
        if not self.voucher_id:
            raise ValueError("a channel ticket names its voucher")
        _check_node_id(self.node_id)
        check_amount("a channel ticket's seq", self.seq)
        check_amount("a channel ticket's total_micro", self.total_micro, allow_zero=True)


@message(33)
@dataclass(frozen=True)
class ChannelTickets(Message):
    """Channel tickets a lessee hands a node (`POST /v1/channels`), each signed on its own, with the
    vouchers they draw on: the node checks each ticket's signer against its voucher's lessee."""

    tickets: Annotated[tuple[ChannelTicket, ...], MaxLen(64)]
    vouchers: Annotated[tuple[Voucher, ...], MaxLen(64)]


@message(27)
@dataclass(frozen=True)
class ReceiptBatch(Message):
    """Receipts a node sends to the anchor together; signed by the node (every receipt is signed too).

    `channels` carries the latest `ChannelTicket` the node holds for each voucher of the batch: the
    anchor pays receipts on a voucher only up to what the lessee signed for this node.
    """

    receipts: Annotated[tuple[Receipt, ...], MaxLen(1024)]
    signer: PublicKeyBytes
    signature: SignatureBytes
    channels: Annotated[tuple[ChannelTicket, ...], MaxLen(1024)] = ()

    OPTIONAL_TAIL: ClassVar[int] = 1


@message(30)
@dataclass(frozen=True)
class InvokeRequest(Message):
    """A lessee asks a node to run the bundle `digest` on `payload` (JSON bytes)."""

    invocation_id: Annotated[str, MaxLen(64)]
    digest: str
    payload: Annotated[bytes, MaxLen(MAX_PAYLOAD_BYTES)]
    timeout_s: float  # how long the caller will wait; the node also applies the manifest's
    voucher: Voucher | None  # how the lessee pays (issue #5); None: the owner runs it unpaid (devnet)
    signer: PublicKeyBytes
    signature: SignatureBytes
    # With a voucher: the lessee's signed ticket for this invocation (see `SpendTicket`); added
    # later, left off the wire when None so unpaid requests keep their encodings.
    ticket: SpendTicket | None = None

    OPTIONAL_TAIL: ClassVar[int] = 1

    def __post_init__(self) -> None:
        _check_digest(self.digest)
        if not self.invocation_id:
            raise ValueError("invocation id is empty")
        if not 0 < self.timeout_s <= 3600:
            raise ValueError(f"timeout_s {self.timeout_s} outside (0, 3600]")


def request_sha256(request: InvokeRequest) -> bytes:
    """What a node ran, as its receipt names it: SHA-256 of the bundle digest, the caller's timeout
    (a shorter one can turn a result into a timeout) and the payload. Not the invocation id nor
    the voucher: replicas of one invocation differ in those and must still hash alike."""
    timeout = struct.pack(">d", request.timeout_s)
    return hashlib.sha256(
        b"p2pfaas-request-v1\0" + bytes.fromhex(request.digest) + timeout + request.payload
    ).digest()


# InvokeResult.error_type for failures that are not the function's own exception.
ERROR_TIMEOUT = "p2pfaas.timeout"
ERROR_MEMORY = "p2pfaas.memory"
ERROR_EXECUTOR = "p2pfaas.executor"


@message(31)
@dataclass(frozen=True)
class InvokeResult(Message):
    """The node's signed answer: the function's output, or its error and traceback."""

    invocation_id: Annotated[str, MaxLen(64)]
    digest: str
    ok: bool
    output: Annotated[bytes, MaxLen(MAX_PAYLOAD_BYTES)]  # JSON of the return value when ok
    error_type: Annotated[str, MaxLen(256)]  # "" when ok; else the exception's class or a node-side kind
    error_message: Annotated[str, MaxLen(4 * KiB)]
    traceback: Annotated[str, MaxLen(MAX_TRACEBACK_CHARS)]
    duration_s: float
    cold: bool
    receipt: Receipt | None  # usage and price (issue #4 meters it; issue #5 settles it)
    signer: PublicKeyBytes
    signature: SignatureBytes
    # What the call printed (stdout and stderr, interleaved), as the runtime captured it: at most
    # 64 KiB and a line on what was dropped (`exec/runtime/shim.py`). Left off the wire when empty.
    logs: Annotated[str, MaxLen(MAX_LOG_CHARS)] = ""

    OPTIONAL_TAIL: ClassVar[int] = 1


@message(40)
@dataclass(frozen=True)
class NodeStatus(Message):
    """What a node's /v1/status reports about itself (unsigned: informational only)."""

    node_id: str
    url: Annotated[str, MaxLen(256)]
    executor: Annotated[str, MaxLen(64)]
    sandboxed: bool
    invocations: int
    in_flight: int
    cached_bundles: int
    away: Annotated[str, MaxLen(256)] = ""  # why it does not lend now (node/lending.py); "": it lends

    OPTIONAL_TAIL: ClassVar[int] = 1


@message(41)
@dataclass(frozen=True)
class Observed(Message):
    """What `GET /v1/whoami` answers: the address the request came from, as the server saw it (behind
    NAT: the router's). A node learns from it the address others would have to reach it at."""

    address: Annotated[str, MaxLen(64)]
