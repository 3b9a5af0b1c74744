"""The DHT's wire messages (codec tags 50-69): signed RPC datagrams and signed, expiring records.

Every datagram is one codec message whose last fields are `signer` and `signature` (see `signing.py`):
the sender's Kademlia id is the SHA-1 of `signer`, never a field a peer may choose. Requests are
`Ping`, `FindNode`, `FindValue` and `Store`; every request is answered by one `Reply`. A `Record` is signed
by its publisher, independently of the datagram that carries it, so any node may relay it and none can
alter it. A `Capacity` rides inside a `Record` as a volunteer's advert; a `Record` without one is a
provider record ("I hold bundle X").

This module only declares shapes and size limits; it sends nothing and decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from p2pfaas.codec import MaxLen, Message, message

ID_BYTES = 20
RPC_ID_BYTES = 8
MAX_DATAGRAM_BYTES = 1200  # stays below the IPv6 minimum MTU minus headers: never fragmented
MAX_RECORD_BYTES = 512
MAX_CONTACTS = 20
MAX_RECORDS_PER_REPLY = 8

Host = Annotated[str, MaxLen(64)]
Key = Annotated[bytes, MaxLen(ID_BYTES)]
RpcId = Annotated[bytes, MaxLen(RPC_ID_BYTES)]
Signer = Annotated[bytes, MaxLen(32)]
Signature = Annotated[bytes, MaxLen(64)]
Coord = Annotated[tuple[float, ...], MaxLen(4)]


@message(50)
@dataclass(frozen=True)
class Contact(Message):
    """A peer as a routing table knows it; `node_id` is only trusted once the peer signs with its key."""

    node_id: Key
    host: Host
    port: int

    def __post_init__(self) -> None:
        if len(self.node_id) != ID_BYTES or not 0 < self.port < 65536:
            raise ValueError("contact needs a 20-byte id and a port in 1..65535")


@message(51)
@dataclass(frozen=True)
class Capacity(Message):
    """What a volunteer lends now. Prices are integer micro-credits; `coord` is its Vivaldi position."""

    runtimes: Annotated[tuple[Annotated[str, MaxLen(32)], ...], MaxLen(8)]
    cores: int
    memory_mb: int
    free_slots: int
    price_per_cpu_s: int
    price_per_gb_s: int
    load: float
    coord: Coord
    coord_error: float
    draining: bool
    # Who may run here without paying (`p2pfaas.node.payments.book.UnpaidPolicy.describe`): "none",
    # "owners" (a devnet), "keys" (an allow-list) or "owners+keys". Left off the wire at "none".
    unpaid: Annotated[str, MaxLen(16)] = "none"
    # The base URL to call when it is not http://HOST:PORT of the record: a node behind NAT names the
    # relay that answers for it (p2pfaas/relay). Left off the wire when empty.
    url: Annotated[str, MaxLen(160)] = ""

    OPTIONAL_TAIL: ClassVar[int] = 2

    def __post_init__(self) -> None:
        if min(self.cores, self.memory_mb, self.free_slots, self.price_per_cpu_s, self.price_per_gb_s) < 0:
            raise ValueError("capacity figures and prices must be >= 0")


@message(52)
@dataclass(frozen=True)
class Record(Message):
    """One publisher's entry under `key`; a newer `seq` from the same signer supersedes, `expires_at`
    (Unix seconds) ends it. `host`/`port` say where the publisher answers."""

    key: Key
    seq: int
    expires_at: float
    host: Host
    port: int
    capacity: Capacity | None
    signer: Signer
    signature: Signature


@message(53)
@dataclass(frozen=True)
class Ping(Message):
    """Are you there, and who are you? `client` senders are not added to routing tables."""

    rpc_id: RpcId
    client: bool
    signer: Signer
    signature: Signature


@message(54)
@dataclass(frozen=True)
class FindNode(Message):
    """Who are the closest contacts you know to `target`?"""

    rpc_id: RpcId
    client: bool
    target: Key
    signer: Signer
    signature: Signature


@message(55)
@dataclass(frozen=True)
class FindValue(Message):
    """Your records under `key` whose signer's id is above `after` (paging), and your closest contacts."""

    rpc_id: RpcId
    client: bool
    key: Key
    after: Key
    signer: Signer
    signature: Signature


@message(56)
@dataclass(frozen=True)
class Store(Message):
    """Keep `record` (signed by its publisher, who need not be the sender)."""

    rpc_id: RpcId
    client: bool
    record: Record
    signer: Signer
    signature: Signature


@message(57)
@dataclass(frozen=True)
class Reply(Message):
    """The answer to any request: the responder's Vivaldi coordinate always (for the requester's RTT sample),
    contacts for FindNode/FindValue, records for FindValue (`more` if a further page exists), `accepted`
    for Store."""

    rpc_id: RpcId
    coord: Coord
    coord_error: float
    contacts: Annotated[tuple[Contact, ...], MaxLen(MAX_CONTACTS)]
    records: Annotated[tuple[Record, ...], MaxLen(MAX_RECORDS_PER_REPLY)]
    more: bool
    accepted: bool
    signer: Signer
    signature: Signature


Request = Ping | FindNode | FindValue | Store
REQUEST_TYPES: tuple[type[Message], ...] = (Ping, FindNode, FindValue, Store)
