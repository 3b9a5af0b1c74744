"""The DHT's datagram protocol: `kademlia.protocol.KademliaProtocol` subclassed onto typed, signed messages.

Framing (replaces rpcudp's): each datagram is one `wire` message, encoded by `p2pfaas.codec` (C msgpack,
fixing defect 10) and signed by its sender (`sealing.py`); incoming requests are dispatched by message class
through a fixed table, never by a remote-chosen name (rpcudp's `__getattr__` RPC is switched off). A
sender's id is the SHA-1 of its signing key; a reply whose signer is not the node we asked is dropped and
counted, as are malformed, oversized, badly signed and rate-limited datagrams. Each RPC is retried with the
same id (`rpc_attempts`, `rpc_timeout_s`) instead of rpcudp's single 5 s wait (defect 9), and a contact is
evicted only after repeated timeouts (defect 4, in `routing.py`). `welcome_if_new` hands records to a new
close node without hashing the key a second time (defect 2). RTTs of first-attempt replies feed Vivaldi.

It does not run lookups (`lookup.py`) or decide what to publish (`node.py`). Background sends are owned
tasks that `close()` cancels.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from cachetools import FIFOCache, TTLCache
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol

from p2pfaas import codec
from p2pfaas.dht import records as recs
from p2pfaas.dht import wire
from p2pfaas.dht.quota import RateLimiter, RateLimits
from p2pfaas.dht.routing import SecureRoutingTable, range_key
from p2pfaas.dht.sealing import seal, verify_datagram
from p2pfaas.dht.store import PutResult, RecordStore
from p2pfaas.dht.vivaldi import Coordinate, Vivaldi
from p2pfaas.errors import DecodeError, SignatureError
from p2pfaas.identity import KeyPair, node_id_of
from p2pfaas.lifecycle import TaskSet

REQUEST_COST = {wire.Ping: 1.0, wire.FindNode: 1.0, wire.FindValue: 1.0, wire.Store: 4.0}
CONTACTS_WITH_RECORDS = 6  # a FindValue reply carrying records shortens its contact list to fit one datagram
MAX_PEER_COORDS = 1024  # Vivaldi coordinates remembered per peer id, least recently heard forgotten first


@dataclass(frozen=True)
class ProtocolConfig:
    ksize: int = 20
    rpc_timeout_s: float = 1.0
    rpc_attempts: int = 3
    unresponsive_s: float = 600.0  # an address that let every attempt time out is skipped this long
    max_failures: int = 3
    max_per_subnet_bucket: int = 2
    max_per_subnet: int = 8
    rate: RateLimits = dataclasses.field(default_factory=RateLimits)


@dataclass
class DhtStats:
    """Counters; read them, do not write them."""

    sent: int = 0
    received: int = 0
    requests_served: int = 0
    rpcs: int = 0
    retries: int = 0
    timeouts: int = 0
    skipped_unresponsive: int = 0
    evictions: int = 0
    dropped_malformed: int = 0
    dropped_bad_signature: int = 0
    dropped_id_mismatch: int = 0
    dropped_rate: int = 0
    dropped_unexpected: int = 0
    bad_records: int = 0
    stores_accepted: int = 0
    stores_refused: int = 0
    lookups: int = 0


@dataclass
class _Pending:
    future: asyncio.Future[tuple[wire.Reply, bytes]]
    address: tuple[str, int]
    expected_id: bytes | None


class SecureProtocol(KademliaProtocol):  # type: ignore[misc]
    """One node's endpoint. Driven by datagrams (`datagram_received`) and by callers of `call_*`/`request`."""

    def __init__(
        self,
        source_node: Node,
        storage: RecordStore,
        *,
        keys: KeyPair,
        loop: asyncio.AbstractEventLoop,
        rng: random.Random,
        wall_clock: Callable[[], float],
        config: ProtocolConfig | None = None,
        client: bool = False,
    ) -> None:
        self.config = config or ProtocolConfig()
        assert source_node.id == keys.node_id, "a node's DHT id is the SHA-1 of its public key"
        self.source_node = source_node
        self.storage = storage
        self.keys = keys
        self.loop = loop
        self.rng = rng
        self.wall_clock = wall_clock
        self.client = client
        self.router = SecureRoutingTable(
            self,
            self.config.ksize,
            source_node,
            clock=loop.time,
            max_failures=self.config.max_failures,
            max_per_subnet_bucket=self.config.max_per_subnet_bucket,
            max_per_subnet=self.config.max_per_subnet,
        )
        self.vivaldi = Vivaldi(rng)
        self.stats = DhtStats()
        self.transport: asyncio.DatagramTransport | None = None
        self._limiter = RateLimiter(self.config.rate)
        self._pending: dict[bytes, _Pending] = {}
        self.peer_coords: FIFOCache[bytes, Coordinate] = FIFOCache(MAX_PEER_COORDS)  # last heard last
        self._unresponsive: TTLCache[tuple[str, int], bool] = TTLCache(  # addresses to skip for a while
            MAX_PEER_COORDS, self.config.unresponsive_s, timer=loop.time
        )
        self._tasks = TaskSet()
        self._handlers: dict[type[codec.Message], Callable[[Any, Node], wire.Reply]] = {
            wire.Ping: self._on_ping,
            wire.FindNode: self._on_find_node,
            wire.FindValue: self._on_find_value,
            wire.Store: self._on_store,
        }

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)  # no remote calls conjured from attribute names (rpcudp's __getattr__)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport is not an asyncio.DatagramTransport subclass (3.11).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def set_home(self, host: str) -> None:
        """Our own address is `host` (`routing.SecureRoutingTable.set_home`)."""
        self.router.set_home(host)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` as a task this protocol owns (cancelled by `close`)."""
        self._tasks.spawn(coro)

    def close(self) -> None:
        self._tasks.cancel_soon()
        for pending in self._pending.values():
            pending.future.cancel()
        self._pending.clear()
        if self.transport is not None:
            self.transport.close()

    # -- receiving ------------------------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stats.received += 1
        address = (addr[0], addr[1])
        if len(data) > wire.MAX_DATAGRAM_BYTES:
            self.stats.dropped_malformed += 1
            return
        try:
            msg = codec.decode(data)
        except DecodeError:
            self.stats.dropped_malformed += 1
            return
        if isinstance(msg, wire.Reply):
            self._on_reply(msg, data, address)
            return
        handler = self._handlers.get(type(msg))
        if handler is None or self.client:
            self.stats.dropped_unexpected += 1
            return
        group = range_key(address[0], address[1], self.router.home)
        endpoint = f"{address[0]}:{address[1]}"
        if not self._limiter.allow(endpoint, self.loop.time(), REQUEST_COST[type(msg)], group=group):
            self.stats.dropped_rate += 1
            return
        try:
            verify_datagram(msg, data)
        except SignatureError:
            self.stats.dropped_bad_signature += 1
            return
        source = Node(node_id_of(getattr(msg, "signer")), address[0], address[1])  # noqa: B009
        reply = handler(msg, source)
        self.stats.requests_served += 1
        self._send(seal(reply, self.keys), address)
        if not getattr(msg, "client"):  # noqa: B009
            self.welcome_if_new(source)

    def _on_reply(self, reply: wire.Reply, data: bytes, address: tuple[str, int]) -> None:
        pending = self._pending.get(reply.rpc_id)
        if pending is None or pending.address != address:
            self.stats.dropped_unexpected += 1
            return
        try:
            verify_datagram(reply, data)
        except SignatureError:
            self.stats.dropped_bad_signature += 1
            return
        sender = node_id_of(reply.signer)
        if pending.expected_id is not None and sender != pending.expected_id:
            self.stats.dropped_id_mismatch += 1
            return
        del self._pending[reply.rpc_id]
        if not pending.future.done():
            pending.future.set_result((reply, sender))

    # -- serving --------------------------------------------------------------------------------------------
    def _reply(self, rpc_id: bytes, **fields: Any) -> wire.Reply:
        """A reply, unsigned: it is signed as it is encoded (`seal`). The placeholder key and signature
        have the real sizes, so its encoded size is what will be sent."""
        return wire.Reply(
            rpc_id=rpc_id,
            coord=self.vivaldi.coord.as_tuple(),
            coord_error=self.vivaldi.error,
            contacts=fields.get("contacts", ()),
            records=fields.get("records", ()),
            more=fields.get("more", False),
            accepted=fields.get("accepted", False),
            signer=bytes(32),
            signature=bytes(64),
        )

    def _contacts_near(self, target: bytes, exclude: Node, limit: int) -> tuple[wire.Contact, ...]:
        nodes = self.router.find_neighbors(Node(target), k=limit, exclude=exclude)
        return tuple(wire.Contact(n.id, n.ip, n.port) for n in nodes)

    def _on_ping(self, msg: wire.Ping, source: Node) -> wire.Reply:
        return self._reply(msg.rpc_id)

    def _on_find_node(self, msg: wire.FindNode, source: Node) -> wire.Reply:
        return self._reply(msg.rpc_id, contacts=self._contacts_near(msg.target, source, self.config.ksize))

    def _on_find_value(self, msg: wire.FindValue, source: Node) -> wire.Reply:
        found = self.storage.get_records(msg.key, self.wall_clock(), after=msg.after)
        if not found:
            return self._reply(msg.rpc_id, contacts=self._contacts_near(msg.key, source, self.config.ksize))
        contacts = self._contacts_near(msg.key, source, CONTACTS_WITH_RECORDS)
        count = 1
        for n in range(2, min(len(found), wire.MAX_RECORDS_PER_REPLY) + 1):
            bigger = self._reply(msg.rpc_id, contacts=contacts, records=tuple(found[:n]), more=True)
            if len(codec.encode(bigger)) > wire.MAX_DATAGRAM_BYTES:
                break
            count = n
        return self._reply(
            msg.rpc_id, contacts=contacts, records=tuple(found[:count]), more=len(found) > count
        )

    def _on_store(self, msg: wire.Store, source: Node) -> wire.Reply:
        try:
            recs.check_record(msg.record)
        except (SignatureError, DecodeError):
            self.stats.bad_records += 1
            return self._reply(msg.rpc_id, accepted=False)
        result = self.storage.put(msg.record, self.wall_clock())
        if result is PutResult.ACCEPTED:
            self.stats.stores_accepted += 1
        else:
            self.stats.stores_refused += 1
        return self._reply(msg.rpc_id, accepted=result is PutResult.ACCEPTED)

    # -- calling --------------------------------------------------------------------------------------------
    def _send(self, data: bytes, address: tuple[str, int]) -> None:
        assert len(data) <= wire.MAX_DATAGRAM_BYTES, f"a datagram of {len(data)} bytes"
        if self.transport is not None and not self.transport.is_closing():
            self.stats.sent += 1
            self.transport.sendto(data, address)

    async def request(
        self, address: tuple[str, int], make: Callable[[bytes], codec.Message], expected_id: bytes | None
    ) -> tuple[wire.Reply, bytes] | None:
        """Send a signed request built by `make(rpc_id)`; return (reply, responder id) or None on timeout.

        An address that let every attempt time out is remembered for `unresponsive_s`: lookups skip it
        (`is_unresponsive`), so dead contacts and made-up ones that hostile nodes hand out cost one
        timeout each, not one per lookup that meets them. Direct calls still go out."""
        rpc_id = self.rng.randbytes(wire.RPC_ID_BYTES)
        data = seal(make(rpc_id), self.keys)
        future: asyncio.Future[tuple[wire.Reply, bytes]] = self.loop.create_future()
        self._pending[rpc_id] = _Pending(future, address, expected_id)
        self.stats.rpcs += 1
        try:
            for attempt in range(self.config.rpc_attempts):
                if attempt:
                    self.stats.retries += 1
                sent_at = self.loop.time()
                self._send(data, address)
                done, _ = await asyncio.wait({future}, timeout=self.config.rpc_timeout_s * (attempt + 1))
                if done:
                    reply, sender = future.result()
                    remote = Coordinate.from_tuple(reply.coord)
                    if remote is not None:
                        self._remember_coord(sender, remote)
                        if attempt == 0:  # Karn's rule: no RTT from a retransmission
                            self.vivaldi.observe(self.loop.time() - sent_at, remote, reply.coord_error)
                    return reply, sender
            self.stats.timeouts += 1
            self._unresponsive[address] = True
            return None
        finally:
            self._pending.pop(rpc_id, None)

    def is_unresponsive(self, address: tuple[str, int]) -> bool:
        return address in self._unresponsive

    def _remember_coord(self, node_id: bytes, coord: Coordinate) -> None:
        self.peer_coords.pop(node_id, None)  # put back last: the least recently heard is forgotten first
        self.peer_coords[node_id] = coord

    def predicted_rtt_s(self, node_id: bytes) -> float | None:
        """Vivaldi's RTT estimate to a peer we have heard from, else None."""
        coord = self.peer_coords.get(node_id)
        return None if coord is None else self.vivaldi.predict_rtt_s(coord)

    def _handle(self, result: tuple[wire.Reply, bytes] | None, node: Node) -> wire.Reply | None:
        """Routing bookkeeping after an RPC to a known contact (replaces stock handle_call_response)."""
        if result is None:
            if self.router.note_failure(node):
                self.stats.evictions += 1
            return None
        self.router.note_success(node)
        self.welcome_if_new(node)
        return result[0]

    async def call_ping(self, node: Node) -> wire.Reply | None:
        c = self.client
        result = await self.request((node.ip, node.port), lambda r: wire.Ping(r, c, b"", b""), node.id)
        return self._handle(result, node)

    async def ping_address(self, address: tuple[str, int]) -> Node | None:
        """Ping an address whose id we do not know yet (a bootstrap peer); its key tells us its id."""
        c = self.client
        result = await self.request(address, lambda r: wire.Ping(r, c, b"", b""), None)
        if result is None:
            return None
        node = Node(result[1], address[0], address[1])
        self.welcome_if_new(node)
        return node

    async def call_find_node(self, node: Node, target: Node) -> wire.Reply | None:
        c, t = self.client, target.id
        result = await self.request((node.ip, node.port), lambda r: wire.FindNode(r, c, t, b"", b""), node.id)
        return self._handle(result, node)

    async def call_find_value(self, node: Node, target: Node, after: bytes = b"") -> wire.Reply | None:
        c, k = self.client, target.id

        def make(r: bytes) -> wire.FindValue:
            return wire.FindValue(r, c, k, after, b"", b"")

        return self._handle(await self.request((node.ip, node.port), make, node.id), node)

    async def call_store(self, node: Node, key: bytes, value: wire.Record) -> bool:
        assert value.key == key
        c = self.client
        address = (node.ip, node.port)
        result = await self.request(address, lambda r: wire.Store(r, c, value, b"", b""), node.id)
        reply = self._handle(result, node)
        return reply is not None and reply.accepted

    # -- routing upkeep -------------------------------------------------------------------------------------
    def welcome_if_new(self, node: Node) -> None:
        """Add a new contact; hand it the records it is now among the closest holders of (paper section 2.5).

        Unlike the stock method, the stored key is already the 160-bit DHT key and is not hashed again.
        """
        if node.id == self.source_node.id:
            return
        if not self.router.is_new_node(node):
            self.router.add_contact(node)  # seen again: most recent, and its bucket is fresh
            return
        neighbors_by_key: dict[bytes, list[Node]] = {}
        for key, record in self.storage:
            keynode = Node(key)
            if key not in neighbors_by_key:
                neighbors_by_key[key] = self.router.find_neighbors(keynode)
            neighbors = neighbors_by_key[key]
            if neighbors:
                new_node_close = node.distance_to(keynode) < neighbors[-1].distance_to(keynode)
                this_closest = self.source_node.distance_to(keynode) < neighbors[0].distance_to(keynode)
            if not neighbors or (new_node_close and this_closest):
                self.spawn(self.call_store(node, key, record))
        self.router.add_contact(node)

    def get_refresh_ids(self, idle_s: float = 3600.0) -> list[bytes]:
        return [
            min(self.rng.randint(*bucket.range), 2**160 - 1).to_bytes(20, "big")
            for bucket in self.router.lonely_buckets(idle_s)
        ]
