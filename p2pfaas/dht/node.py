"""One DHT participant: `kademlia.network.Server` subclassed onto the secure protocol, lookups and records.

What it adds to the stock server: the node id is the SHA-1 of the Ed25519 key (never chosen); `publish`
signs a record and stores it on the k closest nodes found over disjoint paths, and does not crash when it
finds nobody (defect 3); `get` always asks the network and returns every live publisher's newest record
(defect 6: the stock `get` returns a local copy, one value per key); a maintenance task runs every `tick_s`
and honours `refresh_interval_s` for bucket refreshes every time (defect 5: the stock `refresh_table`
uses its interval once, then 3600 s), drops expired records, and republishes only this node's own records
(holders never republish, so a departed publisher's records die at their expiry). A node whose table
has emptied (every contact gone, e.g. after a partition) joins again through the seeds it started with.

It does not decide what to advertise (`p2pfaas/node/overlay.py` does) and keeps no state on disk: a
restarted node rejoins from its seeds, with sequence numbers taken from the wall clock so that its new
records supersede its old ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from kademlia.network import Server
from kademlia.node import Node

from p2pfaas.clock import wall_time
from p2pfaas.dht import records as recs
from p2pfaas.dht.lookup import DisjointLookup, LookupResult
from p2pfaas.dht.protocol import ProtocolConfig, SecureProtocol
from p2pfaas.dht.store import PutResult, RecordStore, StoreLimits
from p2pfaas.dht.wire import Capacity, Record
from p2pfaas.identity import KeyPair
from p2pfaas.lifecycle import TaskSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DhtConfig:
    ksize: int = 20
    alpha: int = 3
    paths: int = 3  # disjoint lookup paths (S/Kademlia section 4.4)
    per_subnet: int = 2  # nodes of one /24 queried per lookup
    replicas: int = 20  # holders a record is stored on (the k closest)
    tick_s: float = 30.0
    refresh_interval_s: float = 900.0  # a bucket not looked up for this long is refreshed
    record_ttl_s: float = 1800.0
    republish_interval_s: float = 600.0  # must be well under record_ttl_s
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    store: StoreLimits = field(default_factory=StoreLimits)

    def __post_init__(self) -> None:
        if not 0 < self.republish_interval_s < self.record_ttl_s <= self.store.max_ttl_s:
            raise ValueError("need 0 < republish_interval_s < record_ttl_s <= store.max_ttl_s")
        if min(self.ksize, self.alpha, self.paths, self.per_subnet, self.replicas) < 1 or self.tick_s <= 0:
            raise ValueError("ksize, alpha, paths, per_subnet, replicas and tick_s must be positive")


@dataclass
class _Own:
    """A record this node publishes and keeps alive; `address` is where the record says it answers."""

    record: Record
    published_at: float


class DhtNode(Server):  # type: ignore[misc]
    """A node (or, with `client=True`, a client that reads and is never added to others' tables).

    Lifecycle: `await listen(port, interface)`, `await bootstrap([(host, port), ...])`, ..., `stop()`.
    """

    protocol_class = SecureProtocol

    def __init__(
        self, keys: KeyPair, *, rng: random.Random, config: DhtConfig | None = None, client: bool = False
    ) -> None:
        self.config = config or DhtConfig()
        self.keys = keys
        self.rng = rng
        self.client = client
        super().__init__(
            ksize=self.config.ksize,
            alpha=self.config.alpha,
            node_id=keys.node_id,
        )
        # Not passed to Server: it tests `storage or ForgetfulStorage()`, and an empty store is falsy.
        self.storage: RecordStore = RecordStore(wall_time, self.config.store)
        self.protocol: SecureProtocol | None = None
        self.seeds: list[tuple[str, int]] = []
        self.own: dict[bytes, _Own] = {}
        self.refreshes = 0
        self._address: tuple[str, int] | None = None
        self._tasks = TaskSet()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _create_protocol(self) -> SecureProtocol:
        return self.protocol_class(
            self.node,
            self.storage,
            keys=self.keys,
            loop=asyncio.get_running_loop(),
            rng=self.rng,
            wall_clock=wall_time,
            config=self.config.protocol,
            client=self.client,
        )

    async def listen(self, port: int, interface: str = "0.0.0.0") -> None:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            self._create_protocol, local_addr=(interface, port)
        )
        self.transport, self.protocol = transport, protocol
        sockname = transport.get_extra_info("sockname")
        self._address = (interface, int(sockname[1]) if sockname else port)
        protocol.set_home(interface)  # a wildcard or a name claims nothing; the owner may say later
        if not self.client:
            self._spawn(self._maintain())

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    def stop(self) -> None:
        self._tasks.cancel_soon()
        if self.protocol is not None:
            self.protocol.close()

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) this node listens on."""
        if self._address is None:
            raise RuntimeError("the DHT node is not listening: call listen() first")
        return self._address

    @property
    def proto(self) -> SecureProtocol:
        if self.protocol is None:
            raise RuntimeError("the DHT node is not listening: call listen() first")
        return self.protocol

    # -- joining --------------------------------------------------------------------------------------------
    async def bootstrap(self, addrs: Iterable[tuple[str, int]]) -> list[Node]:
        """Ping the seeds, then look up our own id so that the table fills with our neighbours.
        Returns the closest nodes found ([] if no seed answered; the maintenance task retries)."""
        addrs = [a for a in addrs if a != self._address]
        self.seeds = list(dict.fromkeys([*self.seeds, *addrs]))
        answered = await asyncio.gather(*(self.proto.ping_address(a) for a in addrs))
        nodes = [n for n in answered if n is not None]
        if not nodes:
            return []
        closest = (await self._lookup(self.node.id, nodes, want_records=False)).nodes
        # Paper section 2.3: a joining node then refreshes every bucket farther than its closest
        # neighbour, so that its table reaches across the whole id space, not only its own corner.
        # (The stock server skips this; its far buckets fill only by chance or an hour later.)
        if closest:
            shared = 160 - (self.node.distance_to(closest[0]) or 1).bit_length()
            # Two rounds per range are enough to meet a few live nodes there (they answer, so they
            # enter the table); a full lookup per range would triple the cost of a join.
            targets = [self._id_differing_at(bit) for bit in range(shared)]
            await asyncio.gather(*(self._refresh(target, max_rounds=2) for target in targets))
        return closest

    def _id_differing_at(self, bit: int) -> bytes:
        """A random id that shares our first `bit` bits and differs in the next: one per far bucket."""
        mine: int = self.node.long_id
        low = 159 - bit
        prefix = ((mine >> low) ^ 1) << low
        return (prefix | self.rng.getrandbits(low)).to_bytes(20, "big")

    def bootstrappable_neighbors(self) -> list[tuple[str, int]]:
        return [(n.ip, n.port) for n in self.proto.router.find_neighbors(self.node)]

    # -- lookups --------------------------------------------------------------------------------------------
    async def _lookup(self, target: bytes, seeds: list[Node] | None, *, want_records: bool) -> LookupResult:
        proto = self.proto
        proto.stats.lookups += 1
        proto.router.touch(target)
        if seeds is None:
            seeds = proto.router.find_neighbors(Node(target), k=self.config.ksize)
        return await self._disjoint(target, seeds, paths=self.config.paths, want_records=want_records).run()

    async def _refresh(self, target: bytes, max_rounds: int = 1_000) -> None:
        """A bucket refresh only needs to meet live nodes in the range: one path, not disjoint ones."""
        self.proto.router.touch(target)
        seeds = self.proto.router.find_neighbors(Node(target), k=self.config.ksize)
        await self._disjoint(target, seeds, paths=1, want_records=False, max_rounds=max_rounds).run()

    def _disjoint(
        self, target: bytes, seeds: list[Node], *, paths: int, want_records: bool, max_rounds: int = 1_000
    ) -> DisjointLookup:
        return DisjointLookup(
            self.proto,
            target,
            seeds,
            ksize=self.config.ksize,
            alpha=self.config.alpha,
            paths=paths,
            per_subnet=self.config.per_subnet,
            want_records=want_records,
            wall_clock=wall_time,
            max_rounds=max_rounds,
        )

    async def find_closest(self, target: bytes) -> list[Node]:
        return (await self._lookup(target, None, want_records=False)).nodes

    async def get_records(self, key: bytes) -> LookupResult:
        """Every live publisher's newest record under `key` that the network holds (and local ones)."""
        result = await self._lookup(key, None, want_records=True)
        now = wall_time()
        for record in self.storage.get_records(key, now):
            publisher = recs.publisher_of(record)
            known = result.records.get(publisher)
            if known is None or known.seq < record.seq:
                result.records[publisher] = record
        return result

    async def get(self, key: bytes) -> list[Record]:
        """The stock `get(key)` shape, on 20-byte DHT keys: the live records under `key`."""
        return list((await self.get_records(key)).records.values())

    # -- publishing -----------------------------------------------------------------------------------------
    async def set_digest(self, dkey: bytes, value: Record) -> bool:
        """Store a signed record on the closest nodes; False (not a crash) when none is found or accepts."""
        return await self.store_record(value) > 0

    async def store_record(self, record: Record) -> int:
        """Store `record` on the `replicas` closest nodes (and here, if this node is among them).
        Returns how many holders accepted it."""
        key = Node(record.key)
        nodes = (await self._lookup(record.key, None, want_records=False)).nodes[: self.config.replicas]
        accepted = 0
        if not self.client and (
            len(nodes) < self.config.replicas
            or self.node.distance_to(key) < max(n.distance_to(key) for n in nodes)
        ):
            accepted += self.storage.put(record, wall_time()) is PutResult.ACCEPTED
        results = await asyncio.gather(*(self.proto.call_store(n, record.key, record) for n in nodes))
        return accepted + sum(results)

    async def publish(self, key: bytes, *, host: str, port: int, capacity: Capacity | None = None) -> int:
        """Sign a new version of this node's record under `key`, store it, and keep it alive until
        `withdraw(key)`. Returns how many holders accepted it."""
        now = wall_time()
        previous = self.own.get(key)
        seq = max(int(now * 1000), previous.record.seq + 1 if previous else 0)
        record = recs.make_record(
            self.keys,
            key=key,
            seq=seq,
            expires_at=now + self.config.record_ttl_s,
            host=host,
            port=port,
            capacity=capacity,
        )
        self.own[key] = _Own(record, now)
        return await self.store_record(record)

    def withdraw(self, key: bytes) -> None:
        """Stop republishing `key`; holders drop the record when it expires."""
        self.own.pop(key, None)

    # -- upkeep ---------------------------------------------------------------------------------------------
    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s * self.rng.uniform(0.9, 1.1))
            try:
                await self.maintain_once()
            except Exception:  # upkeep must outlive one bad round; the next tick tries again
                log.exception("DHT upkeep round failed")

    async def maintain_once(self) -> None:
        """One upkeep round: expire, rejoin if alone, refresh idle buckets, republish own stale records."""
        now = wall_time()
        self.storage.expire(now)
        proto = self.proto
        if not proto.router.contacts() and self.seeds:
            await self.bootstrap(self.seeds)
        idle = proto.get_refresh_ids(self.config.refresh_interval_s)
        if idle:
            self.refreshes += 1
            await asyncio.gather(*(self._refresh(target) for target in idle))
        for key, own in list(self.own.items()):
            if now - own.published_at >= self.config.republish_interval_s and self.own.get(key) is own:
                record = own.record
                await self.publish(key, host=record.host, port=record.port, capacity=record.capacity)


@contextlib.asynccontextmanager
async def running_node(
    host: str, port: int, *, keys: KeyPair | None = None, rng: random.Random | None = None
) -> AsyncIterator[DhtNode]:
    """A listening DHT node that joins nobody: the anchor's bootstrap node. Stopped on exit."""
    rng = rng or random.Random()
    node = DhtNode(keys or KeyPair.from_seed(rng.randbytes(32)), rng=rng)
    await node.listen(port, host)
    try:
        yield node
    finally:
        node.stop()
