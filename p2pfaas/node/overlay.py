"""A volunteer node's place in the overlay: join the DHT, advertise capacity, announce bundles held.

`Overlay` is an async context manager started by `NodeDaemon` when the node has a DHT port. Entering it
binds the DHT endpoint and starts one owned task that joins (through the anchor's bootstrap node or
`--peer`s) and then republishes the capacity advert every `advert_interval_s` with fresh load figures.
A failed join is not fatal: the DHT node's upkeep rejoins from its seeds whenever its table is empty,
so a node keeps serving, and later joins, while the anchor is down.

It does not decide placement or talk HTTP; it answers `find_nearby`, `providers`, `contacts`,
`coordinate` and `predicted_rtt` for the node's other parts and for gossip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from kademlia.node import Node

from p2pfaas.clock import wall_time
from p2pfaas.dht import adverts, records
from p2pfaas.dht.lookup import LookupResult
from p2pfaas.dht.node import DhtConfig, DhtNode
from p2pfaas.dht.vivaldi import Coordinate
from p2pfaas.dht.wire import Capacity
from p2pfaas.identity import KeyPair
from p2pfaas.lifecycle import TaskSet
from p2pfaas.node.wheel_source import WheelSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OverlayConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    peers: tuple[tuple[str, int], ...] = ()
    advert_interval_s: float = 60.0
    dht: DhtConfig = field(default_factory=DhtConfig)


@dataclass(frozen=True)
class Offer:
    """What the node lends, as its operator configured it."""

    url: str
    runtimes: tuple[str, ...]
    cores: int
    memory_mb: int
    price_per_cpu_s: int = 0
    price_per_gb_s: int = 0
    unpaid: str = "none"  # who may run here unpaid (UnpaidPolicy.describe), said in every advert


@dataclass(frozen=True)
class Load:
    """How busy the node is now (read just before each advert)."""

    free_slots: int
    load: float
    draining: bool = False


class Overlay:
    """`async with Overlay(keys, rng=, config=, offer=, load=) as overlay:`; driven by its own task."""

    def __init__(
        self,
        keys: KeyPair,
        *,
        rng: random.Random,
        config: OverlayConfig,
        offer: Offer,
        load: Callable[[], Load] | None = None,
    ) -> None:
        self.keys = keys
        self.rng = rng
        self.config = config
        self.offer = offer
        self.load = load or (lambda: Load(free_slots=offer.cores, load=0.0))
        self.dht = DhtNode(keys, rng=rng, config=config.dht)
        self.reputation = adverts.Reputation()
        self.adverts_published = 0
        self.joined = asyncio.Event()
        self._tasks = TaskSet()
        self.relayed = False
        self._http = _host_port(offer.url)
        self.observe_lookup: Callable[[float], None] | None = None  # each lookup's seconds (metrics)

    @property
    def address(self) -> tuple[str, int]:
        return self.dht.address

    def set_url(self, url: str, *, relayed: bool) -> None:
        """Where the node answers now. A relayed node takes part as a DHT client (it asks, but nobody
        puts it in a routing table: it cannot be reached), names its relay in its adverts and announces
        no bundles (peers would fetch them through the relay). Republishes at once."""
        self._http = _host_port(url)
        self.offer = dataclasses.replace(self.offer, url=url)
        self.relayed = relayed
        self.dht.proto.client = relayed
        if not relayed:
            self.dht.proto.set_home(self._http[0])  # where we are: our range's honest neighbours count apart
        if self.dht.proto.router.contacts():
            self._tasks.spawn(self.publish_advert(), name="advert")

    async def __aenter__(self) -> Overlay:
        await self.dht.listen(self.config.port, self.config.host)
        self._tasks.spawn(self._run(), name="overlay")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._tasks.cancel()
        self.dht.stop()

    async def join(self) -> int:
        """Join through the configured peers; returns how many nodes the join found (0: retried later)."""
        found = await self.dht.bootstrap(self.config.peers)
        if found:
            self.joined.set()
        return len(found)

    async def _run(self) -> None:
        await self.join()
        while True:
            try:
                if self.dht.proto.router.contacts():
                    self.joined.set()
                    await self.publish_advert()
            except Exception:  # one failed round must not end the advertising
                log.exception("publishing the capacity advert failed")
            await asyncio.sleep(self.config.advert_interval_s * self.rng.uniform(0.8, 1.2))

    # -- publishing -----------------------------------------------------------------------------------------
    def capacity(self) -> Capacity:
        now = self.load()
        viv = self.dht.proto.vivaldi
        return Capacity(
            runtimes=self.offer.runtimes,
            cores=self.offer.cores,
            memory_mb=self.offer.memory_mb,
            free_slots=max(0, now.free_slots),
            price_per_cpu_s=self.offer.price_per_cpu_s,
            price_per_gb_s=self.offer.price_per_gb_s,
            load=float(now.load),
            coord=viv.coord.as_tuple(),
            coord_error=viv.error,
            draining=now.draining,
            unpaid=self.offer.unpaid,
            url="" if self.offer.url == adverts.plain_url(*self._http) else self.offer.url,
        )

    async def publish_advert(self) -> int:
        """Publish a fresh advert under each runtime's key; returns the holders that accepted them."""
        capacity = self.capacity()
        host, port = self._http
        accepted = 0
        for runtime in self.offer.runtimes:
            key = records.advert_key(runtime)
            accepted += await self.dht.publish(key, host=host, port=port, capacity=capacity)
        self.adverts_published += 1
        return accepted

    async def announce_provider(self, digest: str) -> int:
        """Say that this node holds bundle `digest` (hex SHA-256); kept alive until `withdraw_provider`.
        A relayed node announces nothing (returns 0): its peers fetch from others or from the anchor."""
        if self.relayed:
            return 0
        host, port = self._http
        return await self.dht.publish(records.provider_key(bytes.fromhex(digest)), host=host, port=port)

    def withdraw_provider(self, digest: str) -> None:
        self.dht.withdraw(records.provider_key(bytes.fromhex(digest)))

    def on_bundle_cached(self, digest: str) -> None:
        """The NodeService hook: announce in the background (owned by the DHT node's tasks)."""
        self.dht.proto.spawn(self.announce_provider(digest))

    # -- reading --------------------------------------------------------------------------------------------
    async def find_nearby(
        self, runtime: str, count: int = 8, max_price: int | None = None
    ) -> list[adverts.Advert]:
        """Live peers offering `runtime`, ordered by predicted RTT (see `adverts.rank`); not this node."""
        found = await self._lookup(records.advert_key(runtime))
        return adverts.rank(
            found.records.values(),
            own=self.coordinate(),
            now=wall_time(),
            count=count,
            max_price=max_price,
            reputation=self.reputation,
            exclude=self.keys.node_id,
        )

    async def providers(self, digest: str) -> list[str]:
        """Base URLs of peers that announced they hold bundle `digest` (not this node)."""
        found = await self._lookup(records.provider_key(bytes.fromhex(digest)))
        now = wall_time()
        return [
            adverts.url_of(r)
            for publisher, r in sorted(found.records.items())
            if publisher != self.keys.node_id and r.expires_at > now
        ]

    async def _lookup(self, key: bytes) -> LookupResult:
        """The DHT's records under `key`, the lookup's time told to `observe_lookup` (metrics)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await self.dht.get_records(key)
        finally:
            if self.observe_lookup is not None:
                self.observe_lookup(loop.time() - started)

    def contacts(self) -> list[Node]:
        return list(self.dht.proto.router.contacts())

    def coordinate(self) -> Coordinate:
        return self.dht.proto.vivaldi.coord

    def predicted_rtt(self, node_id: bytes) -> float | None:
        return self.dht.proto.predicted_rtt_s(node_id)

    def stats(self) -> dict[str, Any]:
        return {"contacts": len(self.contacts()), "adverts_published": self.adverts_published}


def _host_port(url: str) -> tuple[str, int]:
    split = urlsplit(url)
    port = split.port or {"http": 80, "https": 443}.get(split.scheme)
    if split.hostname is None or port is None:
        raise ValueError(f"the node's URL {url!r} needs a host and an http(s) scheme or a port")
    return split.hostname, port


def overlay_for(
    *,
    keys: KeyPair,
    rng: random.Random,
    url: str,
    host: str,
    port: int,
    peers: tuple[tuple[str, int], ...],
    runtimes: tuple[str, ...],
    cores: float,
    memory_mb: int,
    service: Any,
    price_per_cpu_s: int = 0,
    price_per_gb_s: int = 0,
    unpaid: str = "none",
) -> Overlay:
    """The daemon's overlay: offers what the node lends and reads free slots from the service's admission
    control when it has one (else it advertises every core as free)."""
    offer = Offer(
        url=url,
        runtimes=runtimes,
        cores=max(1, round(cores)),
        memory_mb=memory_mb,
        price_per_cpu_s=price_per_cpu_s,
        price_per_gb_s=price_per_gb_s,
        unpaid=unpaid,
    )

    def load() -> Load:
        admission = getattr(service, "admission", None)
        if admission is None:
            return Load(free_slots=offer.cores, load=0.0)
        free = int(admission.free_slots())
        return Load(free_slots=free, load=max(0.0, 1.0 - free / offer.cores))

    overlay = Overlay(
        keys, rng=rng, config=OverlayConfig(host=host, port=port, peers=peers), offer=offer, load=load
    )
    # The hooks of the service's bundles (`node.bundles.BundleSource`), where this service has them.
    bundles = getattr(service, "bundles", None)
    if bundles is not None:
        bundles.find_providers = overlay.providers
        bundles.on_bundle_cached = overlay.on_bundle_cached
        bundles.on_bundle_evicted = (
            overlay.withdraw_provider
        )  # stop republishing: the record dies at its expiry
    # The same for its dependency layers (`node.layers`, `node.wheel_source`): announced like bundles.
    layers = getattr(service, "layers", None)
    if layers is not None:
        layers.on_cached = overlay.on_bundle_cached
        layers.on_evicted = overlay.withdraw_provider
        source = getattr(layers, "fetch_wheel", None)
        if isinstance(source, WheelSource):
            source.find_providers = overlay.providers
    return overlay
