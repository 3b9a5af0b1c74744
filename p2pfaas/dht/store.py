"""The record store (sans-I/O policy, and the `kademlia` IStorage subclass): many records per key.

Fixes KADEMLIA.md defects 5 and 6 for storage: a key holds one record per publisher (provider records),
each with its own wall-clock expiry; a newer sequence number from the same publisher supersedes, an older
or equal one is refused, so nobody can overwrite anyone else's record. Holders never republish
(`iter_older_than` is empty): only a publisher keeps its records alive, so records of a departed
publisher die at their expiry. Quotas bound what one publisher and one key may take.

It does not verify signatures (`records.check_record` does, before `put`) and does no I/O: the time comes
from the `clock` passed in (wall seconds, from `p2pfaas.clock.wall_time` in a service).
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kademlia.storage import IStorage

from p2pfaas.dht.records import publisher_of
from p2pfaas.dht.wire import Record


class PutResult(enum.Enum):
    ACCEPTED = "accepted"
    STALE = "stale"  # same publisher, sequence number not newer
    EXPIRED = "expired"
    TOO_LONG = "too-long"  # expiry further ahead than max_ttl_s
    QUOTA = "quota"  # the publisher, the key or the store is full


@dataclass(frozen=True)
class StoreLimits:
    max_ttl_s: float = 2 * 3600.0
    max_records_per_publisher: int = 32
    max_publishers_per_key: int = 1024
    max_records: int = 50_000


class RecordStore(IStorage):  # type: ignore[misc]
    """Records by key, then by publisher id. Driven by the protocol (`put`, `get`) and a periodic `expire`."""

    def __init__(self, clock: Callable[[], float], limits: StoreLimits | None = None) -> None:
        self.clock = clock
        self.limits = limits or StoreLimits()
        self._by_key: dict[bytes, dict[bytes, Record]] = {}
        self._per_publisher: dict[bytes, int] = {}
        self._count = 0

    # -- the policy core ----------------------------------------------------------------------------------
    def put(self, record: Record, now: float) -> PutResult:
        if record.expires_at <= now:
            return PutResult.EXPIRED
        if record.expires_at - now > self.limits.max_ttl_s:
            return PutResult.TOO_LONG
        publisher = publisher_of(record)
        entries = self._by_key.setdefault(record.key, {})
        old = entries.get(publisher)
        if old is not None:
            if old.seq >= record.seq:
                return PutResult.STALE
            entries[publisher] = record
            return PutResult.ACCEPTED
        if (
            self._per_publisher.get(publisher, 0) >= self.limits.max_records_per_publisher
            or len(entries) >= self.limits.max_publishers_per_key
            or self._count >= self.limits.max_records
        ):
            if not entries:
                del self._by_key[record.key]
            return PutResult.QUOTA
        entries[publisher] = record
        self._per_publisher[publisher] = self._per_publisher.get(publisher, 0) + 1
        self._count += 1
        return PutResult.ACCEPTED

    def get_records(self, key: bytes, now: float, after: bytes = b"") -> list[Record]:
        """Live records under `key` in publisher-id order, starting above `after` and wrapping around
        (a ring), so that a random `after` gives a random window of a key with many publishers."""
        entries = self._by_key.get(key, {})
        ordered = [p for p in sorted(entries) if entries[p].expires_at > now]
        start = bisect.bisect_right(ordered, after)
        return [entries[p] for p in ordered[start:] + ordered[:start]]

    def expire(self, now: float) -> int:
        removed = 0
        for key in list(self._by_key):
            entries = self._by_key[key]
            for publisher in [p for p, r in entries.items() if r.expires_at <= now]:
                del entries[publisher]
                self._forget(publisher)
                removed += 1
            if not entries:
                del self._by_key[key]
        return removed

    def _forget(self, publisher: bytes) -> None:
        self._count -= 1
        left = self._per_publisher[publisher] - 1
        if left:
            self._per_publisher[publisher] = left
        else:
            del self._per_publisher[publisher]

    def __len__(self) -> int:
        return self._count

    def keys(self) -> list[bytes]:
        return list(self._by_key)

    # -- kademlia's IStorage interface, for code that still speaks it ------------------------------------
    def __setitem__(self, key: bytes, value: Record) -> None:
        if value.key != key:
            raise ValueError("a record is stored under its own key")
        self.put(value, self.clock())

    def __getitem__(self, key: bytes) -> list[Record]:
        found = self.get_records(key, self.clock())
        if not found:
            raise KeyError(key)
        return found

    def get(self, key: bytes, default: list[Record] | None = None) -> list[Record] | None:
        return self.get_records(key, self.clock()) or default

    def iter_older_than(self, seconds_old: float) -> list[tuple[bytes, Record]]:
        return []  # holders never republish: only the publisher does (fixes defect 5)

    def __iter__(self) -> Iterator[tuple[bytes, Record]]:
        now = self.clock()
        return iter(
            [(k, r) for k, entries in self._by_key.items() for r in entries.values() if r.expires_at > now]
        )
