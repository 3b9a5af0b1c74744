"""Load gossip between nodes: the asyncio adapter around `placement.view.LoadView`.

Every `period_s` (jittered) a node sends `fanout` neighbours a `GossipExchange` over
`POST /v1/gossip`: its own signed, sequence-numbered `LoadReport` plus the freshest reports it holds
from others (each still signed by its origin, with how long it has held it); the neighbour answers in
kind (push-pull). Every report's signature is checked before it enters the view, and the report's
node id is the hash of its signer's key, so a node can speak only for itself. The exchange's round
trip feeds the view's RTT estimate; a neighbour that does not answer is dropped from the view.

Neighbours come from a callable (the daemon unites DHT contacts' adverts, the anchor's node list and
the peers already in the view), so gossip works with or without the DHT. A probe (for policies that
probe) is a single exchange. It does not decide placement (router.py) or scaling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from p2pfaas import signing
from p2pfaas.clock import wall_time
from p2pfaas.errors import P2PFaaSError, SignatureError
from p2pfaas.identity import KeyPair, PublicKey
from p2pfaas.placement.policy import ProbeAnswer
from p2pfaas.placement.view import LoadView, PeerLoad
from p2pfaas.placement.wire import (
    MAX_RELAYED_REPORTS,
    MAX_WARM_ENTRIES,
    FunctionLoad,
    GossipExchange,
    LoadReport,
)

log = logging.getLogger(__name__)

Exchange = Callable[[str, GossipExchange], Awaitable[GossipExchange]]  # url, ours -> theirs


@dataclass(frozen=True)
class LocalLoad:
    """This node's load right now, as its report will say it."""

    capacity: int
    free_slots: int
    queue_length: int
    draining: bool
    warm: dict[str, int]
    queued: dict[str, int]


@dataclass
class Gossiper:
    """Driven by its own `run()` task and by the node app's /v1/gossip handler (`receive`)."""

    keys: KeyPair
    view: LoadView
    local_load: Callable[[], LocalLoad]
    exchange: Exchange
    neighbours: Callable[[], Sequence[str]]  # peer base URLs
    rng: random.Random
    url: str = ""
    period_s: float = 2.0
    fanout: int = 2
    relay: int = 8
    # Called with (node id, report) for each verified report a peer sends about itself (not relayed
    # ones): the router hands queued work to a peer that reports free slots (work pulling).
    on_sender: Callable[[str, LoadReport], None] | None = None
    exchanges: int = 0
    failures: int = 0
    _seq: int = 0
    _signed: dict[str, tuple[LoadReport, float]] = field(default_factory=dict)  # node id -> (report, got at)

    # --- messages --------------------------------------------------------------------------------

    def own_report(self) -> LoadReport:
        # Wall-clock milliseconds keep the sequence increasing across restarts of the node.
        self._seq = max(self._seq + 1, int(wall_time() * 1000))
        load = self.local_load()
        functions = sorted(set(load.warm) | set(load.queued), key=lambda d: -load.queued.get(d, 0))
        return signing.sign(
            LoadReport(
                url=self.url,
                seq=self._seq,
                issued_at=wall_time(),
                capacity=load.capacity,
                free_slots=load.free_slots,
                queue_length=load.queue_length,
                draining=load.draining,
                functions=tuple(
                    FunctionLoad(digest=d, warm=load.warm.get(d, 0), queued=load.queued.get(d, 0))
                    for d in functions[:MAX_WARM_ENTRIES]
                ),
                signer=b"",
                signature=b"",
            ),
            self.keys,
        )

    def message(self) -> GossipExchange:
        now = asyncio.get_running_loop().time()
        fresh = sorted(self._signed.values(), key=lambda item: -item[1])
        fresh = [item for item in fresh if now - item[1] <= self.view.max_age_s][
            : min(self.relay, MAX_RELAYED_REPORTS)
        ]
        return GossipExchange(
            sender=self.own_report(),
            relayed=tuple(report for report, _ in fresh),
            relayed_age_ms=tuple(int((now - got_at) * 1000) for _, got_at in fresh),
        )

    def receive(self, msg: GossipExchange) -> str:
        """Take a peer's exchange into the view; return the sender's node id. Raises SignatureError
        when the sender's own report is forged (a bad relayed report is only skipped)."""
        now = asyncio.get_running_loop().time()
        sender_id = self._take(msg.sender, now)
        if sender_id is None:
            raise SignatureError("gossip sender's report does not verify")
        if self.on_sender is not None and sender_id != self.keys.key_id:
            self.on_sender(sender_id, msg.sender)
        for report, age_ms in zip(msg.relayed, msg.relayed_age_ms, strict=False):
            age_s = min(max(0, age_ms), int(self.view.max_age_s * 1000)) / 1000
            self._take(report, now - age_s)
        return sender_id

    def _take(self, report: LoadReport, received_at: float) -> str | None:
        try:
            signer = signing.verify(report)
        except (SignatureError, ValueError):
            return None
        node_id = signer.key_id
        if node_id == self.keys.key_id:
            return node_id
        load = PeerLoad(
            node_id=node_id,
            url=report.url,
            seq=report.seq,
            capacity=report.capacity,
            free_slots=report.free_slots,
            queue_length=report.queue_length,
            draining=report.draining,
            warm={f.digest: f.warm for f in report.functions if f.warm},
            queued={f.digest: f.queued for f in report.functions if f.queued},
            received_at=received_at,
        )
        if self.view.update(node_id, load):
            self._signed[node_id] = (report, received_at)
        return node_id

    # --- the periodic task -----------------------------------------------------------------------

    async def exchange_with(self, url: str) -> GossipExchange | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            answer = await self.exchange(url, self.message())
            node_id = self.receive(answer)
        except P2PFaaSError as exc:
            self.failures += 1
            log.debug("gossip with %s failed: %s", url, exc)
            for node_id, (report, _) in list(self._signed.items()):
                if report.url == url:
                    self.view.forget(node_id)
                    del self._signed[node_id]
            return None
        self.exchanges += 1
        self.view.observe_rtt(node_id, loop.time() - started)
        return answer

    async def probe(self, url: str) -> ProbeAnswer | None:
        """A peer's exact load now (one exchange), for policies that probe."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await self.exchange_with(url)
        if answer is None:
            return None
        sender = answer.sender
        return ProbeAnswer(
            node_id=PublicKey(sender.signer).key_id,
            capacity=sender.capacity,
            load=sender.capacity - min(sender.free_slots, sender.capacity) + sender.queue_length,
            rtt_s=loop.time() - started,
            draining=sender.draining,
        )

    def _targets(self, count: int | None) -> list[str]:
        urls = [u for u in dict.fromkeys(self.neighbours()) if u and u != self.url]
        if count is None or len(urls) <= count:
            return urls
        return self.rng.sample(urls, count)

    async def round(self, count: int | None = None) -> None:
        """One gossip round with `count` random neighbours (default `fanout`; None in `announce`)."""
        self.view.expire(asyncio.get_running_loop().time())
        for node_id in [n for n in self._signed if self.view.get(n) is None]:
            del self._signed[node_id]
        targets = self._targets(self.fanout if count is None else count)
        await asyncio.gather(*(self.exchange_with(url) for url in targets))

    async def announce(self) -> None:
        """Tell every known neighbour at once (a node that starts draining)."""
        urls = self._targets(None)
        await asyncio.gather(*(self.exchange_with(url) for url in urls))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.round()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.period_s * self.rng.uniform(0.8, 1.2))
