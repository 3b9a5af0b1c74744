"""The routing table: `kademlia.routing.RoutingTable` subclassed to fix its defects and bound Sybils.

Fixes (KADEMLIA.md): `find_neighbors` returns the true k closest contacts (defect 1: the stock
`TableTraverser` stops early and can return [] with a full table); a contact is evicted only after
`max_failures` consecutive timeouts, not one (defect 4); bucket ages come from the injected clock (the
loop's), not `time.monotonic()`, and the bucket-full ping goes through the protocol's owned tasks rather
than an unowned `ensure_future`. Defence: at most `max_per_subnet_bucket` contacts of one address range
(/24 for IPv4, /48 for IPv6) per bucket and `max_per_subnet` in the whole table, so one operator with
one address block cannot fill a table with Sybil ids. The node's own range (`home`: where it is, an
office or campus /24 of honest volunteers) counts per host instead: outsiders cannot take addresses in
it, and a LAN of fifty volunteers keeps them all.

It does not check identities (the protocol adds only contacts that signed with the key matching their
id) and sends nothing itself.
"""

from __future__ import annotations

import functools
import heapq
import ipaddress
from collections.abc import Callable
from typing import Any

from kademlia.node import Node
from kademlia.routing import KBucket, RoutingTable


@functools.lru_cache(maxsize=4096)
def subnet_of(host: str | None, port: int | None = None) -> str:
    """The address range a host counts against: /24 (IPv4) or /48 (IPv6); the host itself otherwise.

    On loopback every endpoint is its own range: a local devnet runs all its nodes on 127.0.0.1."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or ""
    if address.is_loopback:
        return f"{address}:{port or 0}"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def range_key(host: str | None, port: int | None, home: frozenset[str] | set[str]) -> str:
    """What limits count a contact against: its range, or within our own range (`home`), its host."""
    subnet = subnet_of(host, port)
    return (host or "") if subnet in home else subnet


class ClockedKBucket(KBucket):  # type: ignore[misc]
    """A k-bucket whose `last_updated` comes from an injected clock."""

    def __init__(self, lower: int, upper: int, ksize: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        super().__init__(lower, upper, ksize)

    def touch_last_updated(self) -> None:
        self.last_updated = self.clock()

    def split(self) -> tuple[ClockedKBucket, ClockedKBucket]:
        midpoint = (self.range[0] + self.range[1]) // 2
        one = ClockedKBucket(self.range[0], midpoint, self.ksize, self.clock)
        two = ClockedKBucket(midpoint + 1, self.range[1], self.ksize, self.clock)
        one.last_updated = two.last_updated = self.last_updated
        for node in [*self.nodes.values(), *self.replacement_nodes.values()]:
            (one if node.long_id <= midpoint else two).add_node(node)
        return one, two


class SecureRoutingTable(RoutingTable):  # type: ignore[misc]
    """Contacts by XOR distance. Driven by the protocol: `add_contact` after a verified message,
    `note_failure`/`note_success` after each RPC outcome."""

    def __init__(
        self,
        protocol: Any,
        ksize: int,
        node: Node,
        *,
        clock: Callable[[], float],
        max_failures: int = 3,
        max_per_subnet_bucket: int = 2,
        max_per_subnet: int = 8,
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.max_per_subnet_bucket = max_per_subnet_bucket
        self.max_per_subnet = max_per_subnet
        self.failures: dict[bytes, int] = {}
        self.rejected_subnet = 0
        self.home: set[str] = set()  # our own address ranges (`range_key`), claimed by `set_home`
        super().__init__(protocol, ksize, node)

    def set_home(self, host: str) -> None:
        """Our own address is `host`: its range counts per host from now on (`range_key`)."""
        try:
            if ipaddress.ip_address(host).is_loopback:
                return  # loopback endpoints count apart already
        except ValueError:
            return  # a name, not an address: no range to claim
        self.home.add(subnet_of(host))

    def flush(self) -> None:
        self.buckets = [ClockedKBucket(0, 2**160, self.ksize, self.clock)]

    def lonely_buckets(self, idle_s: float = 3600.0) -> list[KBucket]:
        cutoff = self.clock() - idle_s
        return [b for b in self.buckets if b.last_updated < cutoff]

    def touch(self, target: bytes) -> None:
        """Note a lookup of ours in `target`'s range (section 2.3: such a bucket needs no refresh). Unlike
        the stock table, answering others' queries does not count, or a busy node never refreshes."""
        self.buckets[self.get_bucket_for(Node(target))].touch_last_updated()

    def contacts(self) -> list[Node]:
        return [n for b in self.buckets for n in b.nodes.values()]

    def find_neighbors(self, node: Node, k: int | None = None, exclude: Node | None = None) -> list[Node]:
        """The k contacts closest to `node`, excluding `node` itself and anything at `exclude`'s address."""
        k = k or self.ksize
        candidates = (
            n for n in self.contacts() if n.id != node.id and (exclude is None or not n.same_home_as(exclude))
        )
        return heapq.nsmallest(k, candidates, key=node.distance_to)

    def add_contact(self, node: Node) -> None:
        index = self.get_bucket_for(node)
        bucket = self.buckets[index]
        known = bucket.nodes.get(node.id)
        if known is not None:
            # Most recently seen goes to the tail, and the bucket counts as fresh (BEP 5: a bucket with
            # live traffic needs no refresh). A known id at a new address keeps its old one until that
            # fails: a replayed signed request must not re-point a contact.
            if known.same_home_as(node):
                bucket.add_node(known)
                bucket.touch_last_updated()
            return
        subnet = range_key(node.ip, node.port, self.home)
        in_bucket = sum(range_key(n.ip, n.port, self.home) == subnet for n in bucket.nodes.values())
        in_table = sum(range_key(n.ip, n.port, self.home) == subnet for n in self.contacts())
        if in_bucket >= self.max_per_subnet_bucket or in_table >= self.max_per_subnet:
            self.rejected_subnet += 1
            return
        if bucket.add_node(node):
            bucket.touch_last_updated()
            return
        # Section 4.2 of the paper: split if the bucket covers our own id or its depth is not 0 mod 5.
        if bucket.has_in_range(self.node) or bucket.depth() % 5 != 0:
            self.split_bucket(index)
            self.add_contact(node)
        else:
            self.protocol.spawn(self.protocol.call_ping(bucket.head()))

    def note_success(self, node: Node) -> None:
        self.failures.pop(node.id, None)

    def note_failure(self, node: Node) -> bool:
        """Count a timeout; evict after `max_failures` in a row. Returns whether it was evicted."""
        count = self.failures.get(node.id, 0) + 1
        if count < self.max_failures:
            self.failures[node.id] = count
            return False
        self.failures.pop(node.id, None)
        self.remove_contact(node)
        return True
