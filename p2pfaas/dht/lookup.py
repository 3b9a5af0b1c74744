"""Iterative lookups over disjoint paths (S/Kademlia), with the records found along the way.

The initial contacts are dealt round-robin to `paths` independent crawls; a node queried by one path is
never queried by another, so one hostile node cannot steer all paths (I. Baumgart, S. Mies, "S/Kademlia",
ICPADS 2007, section 4.4). Each path is the paper's iterative lookup (Maymounkov & Mazieres 2002,
section 2.3): up to `alpha` queries in flight per round to the closest uncontacted contacts of its own
shortlist, until its k closest have all answered or none is left. The result is the k closest nodes that
answered, over all paths, plus every valid record seen, the newest per publisher. At most `per_subnet`
nodes of one address range are queried per lookup, so Sybils from one block cannot fill the k closest
(within the node's own range it is per host: see `routing.range_key`).

The rounds reuse kademlia's `NodeHeap`; unlike the stock `SpiderCrawl`, a lookup that finds nobody returns
an empty result instead of failing later (defect 3), and records are checked (signature, size, expiry)
before they are believed. It does not store anything or pick among records (see `node.py`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kademlia.node import Node, NodeHeap

from p2pfaas.dht import records as recs
from p2pfaas.dht.protocol import SecureProtocol
from p2pfaas.dht.routing import range_key
from p2pfaas.dht.wire import Record, Reply
from p2pfaas.errors import DecodeError, SignatureError


@dataclass
class LookupResult:
    nodes: list[Node]
    records: dict[bytes, Record] = field(default_factory=dict)  # publisher id -> newest record
    holders: dict[bytes, Node] = field(default_factory=dict)  # publisher id -> a node that had its record
    rounds: int = 0
    messages: int = 0


class DisjointLookup:
    """One lookup for `target`; `run()` drives the queries through `protocol`."""

    def __init__(
        self,
        protocol: SecureProtocol,
        target: bytes,
        seeds: list[Node],
        *,
        ksize: int,
        alpha: int,
        paths: int,
        per_subnet: int,
        want_records: bool,
        wall_clock: Callable[[], float],
        max_rounds: int = 1_000,
    ) -> None:
        self.protocol = protocol
        self.target = Node(target)
        self.ksize = ksize
        self.alpha = alpha
        self.want_records = want_records
        self.wall_clock = wall_clock
        self.claimed: set[bytes] = {protocol.source_node.id}
        self.per_subnet = per_subnet
        self.max_rounds = max_rounds
        self.subnet_claims: Counter[str] = Counter()
        self.answered: dict[bytes, Node] = {}
        self.result = LookupResult(nodes=[])
        ordered = sorted(seeds, key=self.target.distance_to)
        count = max(1, min(paths, len(ordered)))
        # Each path ends when its own closest ceil(k/d)+1 have answered: together the paths still cover
        # more than the k closest, at about the messages of one path of size k, not d times that.
        per_path = ksize if count == 1 else min(ksize, -(-ksize // count) + alpha)
        self.paths = [NodeHeap(self.target, per_path) for _ in range(count)]
        for i, node in enumerate(ordered):
            self.paths[i % len(self.paths)].push(node)

    async def run(self) -> LookupResult:
        if not self.paths:
            return self.result
        rounds = await asyncio.gather(*(self._walk(path) for path in self.paths))
        self.result.rounds = max(rounds, default=0)
        self.result.nodes = sorted(self.answered.values(), key=self.target.distance_to)[: self.ksize]
        return self.result

    async def _walk(self, shortlist: NodeHeap) -> int:
        rounds = 0
        while rounds < self.max_rounds:
            batch: list[Node] = []
            dropped = False  # nodes left out free places in the shortlist: look again before ending
            for node in shortlist.get_uncontacted():
                if len(batch) == self.alpha:
                    break
                if node.id in self.claimed:
                    continue
                if self.protocol.is_unresponsive((node.ip, node.port)):
                    self.protocol.stats.skipped_unresponsive += 1
                    shortlist.remove([node.id])
                    dropped = True
                    continue
                subnet = range_key(node.ip, node.port, self.protocol.router.home)
                shortlist.mark_contacted(node)
                if self.subnet_claims[subnet] >= self.per_subnet:
                    # One address block may not crowd the lookup (Sybils next to a key): out of the
                    # shortlist, so that they do not hold the places of nodes still to be asked.
                    shortlist.remove([node.id])
                    dropped = True
                    continue
                self.subnet_claims[subnet] += 1
                self.claimed.add(node.id)
                batch.append(node)
            if not batch:
                if dropped:
                    continue
                return rounds
            rounds += 1
            replies = await asyncio.gather(*(self._query(node) for node in batch))
            failed = []
            for node, reply in zip(batch, replies, strict=True):
                if reply is None:
                    failed.append(node.id)
                    continue
                self.answered[node.id] = node
                fresh = [c for c in reply.contacts if c.node_id not in self.claimed]
                shortlist.push([Node(c.node_id, c.host, c.port) for c in fresh])
                self._take_records(reply, node)
            shortlist.remove(failed)
        return rounds

    async def _query(self, node: Node) -> Reply | None:
        self.result.messages += 1
        if self.want_records:
            # A random page start per holder: a key with more records than fit a datagram is sampled
            # differently by each holder, so one lookup sees many publishers, not the same first page.
            after = self.protocol.rng.randbytes(20)
            return await self.protocol.call_find_value(node, self.target, after)
        return await self.protocol.call_find_node(node, self.target)

    def _take_records(self, reply: Reply, holder: Node) -> None:
        now = self.wall_clock()
        for record in reply.records:
            if record.key != self.target.id or record.expires_at <= now:
                continue
            known = self.result.records.get(recs.publisher_of(record))
            if known is not None and known == record:
                continue  # the same signed record from another holder: verified already
            try:
                recs.check_record(record)
            except (SignatureError, DecodeError):
                self.protocol.stats.bad_records += 1
                continue
            publisher = recs.publisher_of(record)
            known = self.result.records.get(publisher)
            if known is None or known.seq < record.seq:
                self.result.records[publisher] = record
                self.result.holders[publisher] = holder
