"""Choosing among capacity adverts (sans-I/O): filter, rank by predicted RTT, remember who disappointed.

An advert is a hint, not a promise: a node may have filled up since it published, or may lie. Ranking
skips draining nodes, nodes over the price cap and nodes with no free slot (those come last, not never:
slots free up), then orders by the Vivaldi-predicted RTT from the reader's own coordinate. A
`Reputation` keeps a score per publisher that the reader lowers when an advertised node refuses or
fails it, and a node whose score falls below `floor` is left out until the score recovers with time,
so an advert that lies costs its publisher later picks, not the lessee lost invocations.

It does no I/O and reads no clock: records, the reader's coordinate and `now` are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from p2pfaas.dht.records import publisher_of
from p2pfaas.dht.vivaldi import Coordinate
from p2pfaas.dht.wire import Capacity, Record


@dataclass(frozen=True)
class Advert:
    """A live advert as a reader sees it: who, where (HTTP), what it offers, how far it is predicted."""

    node_id: bytes
    public_key: bytes
    url: str
    capacity: Capacity
    predicted_rtt_s: float
    record: Record | None = None  # the signed record it came from: proof of what the node claimed


def url_of(record: Record) -> str:
    """Where the publisher answers HTTP: its advert's `url` (https, a relay) if it names one, else
    http://HOST:PORT."""
    if record.capacity is not None and record.capacity.url:
        return record.capacity.url
    return plain_url(record.host, record.port)


def plain_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Reputation:
    """Scores in [0, 1] per publisher id; a failure halves a score, time heals it back towards 1."""

    def __init__(
        self, *, floor: float = 0.3, heal_per_s: float = 1.0 / 600.0, max_tracked: int = 10_000
    ) -> None:
        self.floor = floor
        self.heal_per_s = heal_per_s
        self.max_tracked = max_tracked
        self._scores: dict[bytes, tuple[float, float]] = {}  # node id -> (score, when)

    def score(self, node_id: bytes, now: float) -> float:
        score, when = self._scores.get(node_id, (1.0, now))
        return min(1.0, score + (now - when) * self.heal_per_s)

    def failed(self, node_id: bytes, now: float) -> None:
        self._scores[node_id] = (self.score(node_id, now) / 2.0, now)
        if len(self._scores) > self.max_tracked:
            del self._scores[next(iter(self._scores))]

    def trusted(self, node_id: bytes, now: float) -> bool:
        return self.score(node_id, now) >= self.floor


def rank(
    records: Iterable[Record],
    *,
    own: Coordinate,
    now: float,
    count: int,
    max_price: int | None = None,
    reputation: Reputation | None = None,
    exclude: bytes | None = None,
) -> list[Advert]:
    """The best `count` adverts among `records`: live, not draining, within `max_price` (micro-credits
    per CPU-second), trusted; those with a free slot first, each group by predicted RTT."""
    adverts: list[tuple[bool, float, Advert]] = []
    for record in records:
        capacity = record.capacity
        if capacity is None or record.expires_at <= now or capacity.draining:
            continue
        if max_price is not None and capacity.price_per_cpu_s > max_price:
            continue
        node_id = publisher_of(record)
        if node_id == exclude or (reputation is not None and not reputation.trusted(node_id, now)):
            continue
        where = Coordinate.from_tuple(capacity.coord)
        rtt = own.rtt_to(where) if where is not None else math.inf
        advert = Advert(node_id, record.signer, url_of(record), capacity, rtt, record)
        adverts.append((capacity.free_slots <= 0, rtt, advert))
    adverts.sort(key=lambda item: (item[0], item[1], item[2].node_id))
    return [advert for _, _, advert in adverts[:count]]
