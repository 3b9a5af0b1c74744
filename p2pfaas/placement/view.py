"""The gossiped load view: what a node believes about its neighbours' load, and how old that is.

`LoadView` is a sans-I/O core fed with load reports (already signature-checked by the caller) and the
receiver's clock `now`. It keeps the newest report per node by sequence number, so a relayed or
replayed older report never overwrites a newer one; ages reports out after `max_age_s`; remembers
the round-trip times measured (or predicted by Vivaldi) to each peer; and counts the invocations
this node sent to a peer since its last report, so that a seconds-old view is corrected for our own
forwards instead of sending a burst to the one peer that looked idle (the herd effect of stale load
information, Mitzenmacher 2000, "How useful is old information?").

It does no I/O and does not decide placement (see `policy.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PeerLoad:
    """One peer's last report, as the view keeps it. `age_s` and `sent_since` make it an estimate."""

    node_id: str
    url: str
    seq: int
    capacity: int
    free_slots: int
    queue_length: int
    draining: bool
    warm: dict[str, int]  # digest -> warm instances
    queued: dict[str, int]  # digest -> invocations waiting
    received_at: float


@dataclass
class _Entry:
    load: PeerLoad
    sent_since: int = 0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A peer as a placement policy sees it: the report corrected for our own forwards and its age."""

    node_id: str
    url: str
    capacity: int
    est_free: float  # free slots the report claimed, minus what we have sent there since
    est_queue: float  # queued invocations, plus what we sent beyond its free slots
    rtt_s: float
    warm: int  # warm instances of the function being placed
    age_s: float


@dataclass
class LoadView:
    """Newest report per peer, aged out after `max_age_s`. Driven by the gossip adapter."""

    self_id: str
    max_age_s: float = 10.0
    max_peers: int = 64  # memory stays bounded in a large network: the stalest report makes room
    default_rtt_s: float = 0.05  # for a peer we have neither measured nor predicted
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _rtt_s: dict[str, float] = field(default_factory=dict)
    _seqs: dict[str, int] = field(default_factory=dict)  # newest seq seen, kept after expiry too

    def update(self, node_id: str, load: PeerLoad) -> bool:
        """Take `load` if it is newer than what we hold for `node_id`; True if it was taken."""
        if node_id == self.self_id:
            return False
        if load.seq <= self._seqs.get(node_id, -1):
            return False
        self._seqs[node_id] = load.seq
        if node_id not in self._entries and len(self._entries) >= self.max_peers:
            stalest = min(self._entries, key=lambda n: self._entries[n].load.received_at)
            if self._entries[stalest].load.received_at >= load.received_at:
                return False
            del self._entries[stalest]
        capacity = max(0, load.capacity)
        self._entries[node_id] = _Entry(
            PeerLoad(
                node_id=node_id,
                url=load.url,
                seq=load.seq,
                capacity=capacity,
                free_slots=min(max(0, load.free_slots), capacity),
                queue_length=max(0, load.queue_length),
                draining=load.draining,
                warm=dict(load.warm),
                queued=dict(load.queued),
                received_at=load.received_at,
            )
        )
        return True

    def observe_rtt(self, node_id: str, rtt_s: float, *, weight: float = 0.25) -> None:
        """Fold a measured round trip into the peer's estimate (EWMA, like TCP's SRTT)."""
        old = self._rtt_s.get(node_id)
        self._rtt_s[node_id] = rtt_s if old is None else (1 - weight) * old + weight * rtt_s

    def set_rtt(self, node_id: str, rtt_s: float) -> None:
        """Use a predicted RTT (e.g. from Vivaldi coordinates) for a peer."""
        self._rtt_s[node_id] = rtt_s

    def rtt(self, node_id: str) -> float:
        return self._rtt_s.get(node_id, self.default_rtt_s)

    def note_sent(self, node_id: str) -> None:
        """We forwarded one invocation to `node_id`: count it against its last report."""
        entry = self._entries.get(node_id)
        if entry is not None:
            entry.sent_since += 1

    def note_refused(self, node_id: str) -> None:
        """`node_id` refused a forward: it has no free slot, whatever its last report said."""
        entry = self._entries.get(node_id)
        if entry is not None:
            entry.sent_since = max(entry.sent_since, entry.load.free_slots)

    def forget(self, node_id: str) -> None:
        """The peer is gone (unreachable): drop its report until it gossips again."""
        self._entries.pop(node_id, None)

    def expire(self, now: float) -> None:
        for node_id in [n for n, e in self._entries.items() if now - e.load.received_at > self.max_age_s]:
            del self._entries[node_id]

    def get(self, node_id: str) -> PeerLoad | None:
        entry = self._entries.get(node_id)
        return None if entry is None else entry.load

    def loads(self, now: float) -> Iterator[PeerLoad]:
        """Live reports, freshest first is not promised."""
        for entry in self._entries.values():
            if now - entry.load.received_at <= self.max_age_s:
                yield entry.load

    def candidates(self, now: float, digest: str = "") -> list[Candidate]:
        """Live, non-draining peers as placement candidates for function `digest`."""
        out: list[Candidate] = []
        oldest = now - self.max_age_s
        rtts, default_rtt = self._rtt_s, self.default_rtt_s
        for node_id, entry in self._entries.items():
            load = entry.load
            if load.received_at < oldest or load.draining or load.capacity <= 0:
                continue
            est_free = load.free_slots - entry.sent_since
            out.append(
                Candidate(
                    node_id,
                    load.url,
                    load.capacity,
                    est_free if est_free > 0 else 0.0,
                    load.queue_length - est_free if est_free < 0 else load.queue_length,
                    rtts.get(node_id, default_rtt),
                    load.warm.get(digest, 0) if load.warm else 0,
                    now - load.received_at,
                )
            )
        return out

    def freshest(self, now: float, limit: int) -> list[PeerLoad]:
        """Up to `limit` of the most recently received live reports (what gossip relays)."""
        live = [e.load for e in self._entries.values() if now - e.load.received_at <= self.max_age_s]
        live.sort(key=lambda load: load.received_at, reverse=True)
        return live[:limit]

    def __len__(self) -> int:
        return len(self._entries)
