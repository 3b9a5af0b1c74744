"""Where a node gets the wheels of a dependency layer: the peers that announced the layer, the anchor last.

A layer is content-addressed and every wheel is pinned by SHA-256 in the lock the lessee signed, so
a peer is as good a source as the anchor: `LayerCache` checks each wheel's size and hash whoever
sent it. `WheelSource(wheel, layer_digest)` asks up to `bundles.MAX_PEER_TRIES` peers that announced the
layer in the DHT (`find_providers`, looked up once per layer and remembered for `PROVIDERS_TTL_S`),
each within a deadline that grows with the wheel's size (a tarpit costs little), and passes over one
that fails or sends other bytes; then the anchor. So a popular layer's bytes come from the nodes that
run it, and the anchor serves each layer about once, not once per node.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from p2pfaas import rpc
from p2pfaas.bundle.lock import LockedWheel
from p2pfaas.errors import DecodeError, RemoteError
from p2pfaas.node.bundles import peers_to_try

log = logging.getLogger(__name__)

PROVIDERS_TTL_S = 60.0
PEER_BASE_TIMEOUT_S = 10.0
PEER_MIN_RATE = 1 << 20  # bytes/s a peer must at least send before it is given up on


def peer_timeout_s(wheel: LockedWheel) -> float:
    return PEER_BASE_TIMEOUT_S + wheel.size / PEER_MIN_RATE


async def fetch_from(session: aiohttp.ClientSession, base_url: str, wheel: LockedWheel) -> bytes:
    """`wheel` from a peer's `GET /v1/wheels/{sha256}`, never more bytes than the lock says."""
    url = f"{base_url}/v1/wheels/{wheel.sha256}"
    return await rpc.request_bytes(session, "GET", url, timeout_s=peer_timeout_s(wheel), max_bytes=wheel.size)


@dataclass
class WheelSource:
    fetch_from_anchor: Callable[[LockedWheel], Awaitable[bytes]]
    fetch_from_peer: Callable[[str, LockedWheel], Awaitable[bytes]]
    rng: random.Random
    find_providers: Callable[[str], Awaitable[list[str]]] | None = None  # the DHT's, once there is one
    own_url: Callable[[], str] = lambda: ""
    clock: Callable[[], float] = time.monotonic
    peer_bytes: int = 0  # wheel bytes peers sent that matched their lock (for tests and benchmarks)
    anchor_bytes: int = 0
    _providers: dict[str, tuple[float, list[str]]] = field(default_factory=dict)

    async def __call__(self, wheel: LockedWheel, layer_digest: str) -> bytes:
        for peer in await self.providers(layer_digest):
            try:
                data = await self.fetch_from_peer(peer, wheel)
            except (RemoteError, DecodeError) as exc:
                log.info("wheel %s from %s: %s", wheel.filename, peer, exc)
                continue
            if len(data) == wheel.size and hashlib.sha256(data).hexdigest() == wheel.sha256:
                self.peer_bytes += len(data)
                return data
            log.warning("peer %s sent other bytes than wheel %s; trying another source", peer, wheel.filename)
        data = await self.fetch_from_anchor(wheel)
        self.anchor_bytes += len(data)
        return data

    async def providers(self, layer_digest: str) -> list[str]:
        now = self.clock()
        known = self._providers.get(layer_digest)
        if known is not None and now - known[0] < PROVIDERS_TTL_S:
            return known[1]
        peers: list[str] = []
        if self.find_providers is not None:
            peers = await peers_to_try(
                self.find_providers, layer_digest, own_url=self.own_url(), rng=self.rng
            )
        self._providers[layer_digest] = (now, peers)
        while len(self._providers) > 256:
            del self._providers[next(iter(self._providers))]
        return self._providers[layer_digest][1]
