"""How a lessee's client finds entry nodes: capacity adverts in the DHT, nearest first.

`Discovery` runs a client-mode DHT node (it asks, it is never added to others' routing tables, it stores
nothing) bootstrapped from the given seeds (the anchor's bootstrap node, or any peer). Its own Vivaldi
coordinate moves with the RTTs of its lookups, and `find_nearby` ranks live adverts by the RTT predicted
from it (`p2pfaas.dht.adverts.rank`). Results are cached for `ttl_s`. A node that fails the client is
demoted (`demote`), and one whose advert claimed a free slot but answers "busy" loses standing
(`refused_busy`): adverts are hints, and one that overstates capacity costs its publisher later picks,
not the lessee an invocation (the client goes on to the next node). One that charges more than its
advertised prices allow is dropped, and its signed advert is the proof the client sends the anchor
(`overcharged`; `AsyncClient` reports it).

It does not invoke anything: `AsyncClient.entry_nodes` asks it first and falls back to the anchor's list.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Sequence
from types import TracebackType

from p2pfaas.clock import wall_time
from p2pfaas.dht import adverts, records
from p2pfaas.dht.node import DhtConfig, DhtNode
from p2pfaas.dht.wire import Record
from p2pfaas.identity import KeyPair
from p2pfaas.messages import NodeInfo, Receipt
from p2pfaas.trust.adverts import AdvertPrices, Usage, overcharged

DEFAULT_RUNTIME = "python3.11"


def node_info(advert: adverts.Advert) -> NodeInfo:
    """The anchor-list shape of an advert, so the invocation path treats both alike."""
    return NodeInfo(
        node_id=advert.node_id.hex(),
        public_key=advert.public_key,
        url=advert.url,
        runtimes=advert.capacity.runtimes,
        cores=float(advert.capacity.cores),
        memory_mb=advert.capacity.memory_mb,
    )


class Discovery:
    """`async with Discovery(seeds, rng=rng) as d: await d.find_nearby("python3.11", 8)`."""

    def __init__(
        self,
        seeds: Sequence[tuple[str, int]],
        *,
        rng: random.Random,
        runtime: str = DEFAULT_RUNTIME,
        count: int = 8,
        max_price: int | None = None,
        ttl_s: float = 10.0,
        config: DhtConfig | None = None,
    ) -> None:
        if not seeds:
            raise ValueError("discovery needs at least one seed (host, port)")
        self.seeds = list(seeds)
        self.rng = rng
        self.runtime = runtime
        self.count = count
        self.max_price = max_price
        self.ttl_s = ttl_s
        self.reputation = adverts.Reputation()
        self.dht = DhtNode(KeyPair.from_seed(rng.randbytes(32)), rng=rng, config=config, client=True)
        self._cached: list[adverts.Advert] = []
        self._cached_at = float("-inf")
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Discovery:
        loopback = all(_is_loopback(host) for host, _ in self.seeds)
        await self.dht.listen(0, "127.0.0.1" if loopback else "0.0.0.0")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.dht.stop()

    async def find_nearby(
        self, runtime: str, count: int = 8, max_price: int | None = None
    ) -> list[adverts.Advert]:
        """Live nodes offering `runtime` within `max_price`, ordered by predicted RTT ([] if none found)."""
        if not self.dht.proto.router.contacts():
            await self.dht.bootstrap(self.seeds)
        found = await self.dht.get_records(records.advert_key(runtime))
        return adverts.rank(
            found.records.values(),
            own=self.dht.proto.vivaldi.coord,
            now=wall_time(),
            count=count,
            max_price=max_price,
            reputation=self.reputation,
        )

    async def entry_nodes(self, *, refresh: bool = False) -> list[NodeInfo]:
        """The configured runtime's nearest nodes, cached for `ttl_s` unless `refresh`."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            if refresh or loop.time() - self._cached_at > self.ttl_s:
                self._cached = await self.find_nearby(self.runtime, self.count, self.max_price)
                self._cached_at = loop.time()
        return [node_info(a) for a in self._cached]

    def refused_busy(self, node_id: str) -> None:
        """A node answered "busy". If the advert we picked it by claimed a free slot, the advert was
        wrong: stale (gossip is seconds old) or a lie. Either way it costs the publisher standing, which
        heals with time, so an honest node that was briefly full soon ranks as before, while one whose
        adverts keep overstating its capacity keeps losing picks."""
        with_id = bytes.fromhex(node_id)
        if any(a.node_id == with_id and a.capacity.free_slots > 0 for a in self._cached):
            self.reputation.failed(with_id, wall_time())

    def overcharged(self, receipt: Receipt, *, memory_mb: int) -> Record | None:
        """A node picked by its advert billed `receipt` (for a function of `memory_mb`): if that is
        more than its advertised prices allow, the advert lied. The node is dropped from the picks
        and the signed advert returned, so the caller can prove the lie to the anchor."""
        for advert in self._cached:
            if advert.public_key != receipt.signer or advert.record is None:
                continue
            prices = AdvertPrices(advert.capacity.price_per_cpu_s, advert.capacity.price_per_gb_s)
            usage = Usage(receipt.cpu_ms, receipt.wall_ms, receipt.peak_memory_mb, memory_mb)
            if not overcharged(prices, usage, receipt.price_micro):
                return None
            for _ in range(3):  # a proven lie, not a stale hint: out of the picks for a long while
                self.reputation.failed(advert.node_id, wall_time())
            self._cached = [a for a in self._cached if a.node_id != advert.node_id]
            return advert.record
        return None

    def demote(self, node_id: str) -> None:
        """A node found here failed us: rank it lower (out, for a while, after repeated failures)."""
        with_id = bytes.fromhex(node_id)
        self.reputation.failed(with_id, wall_time())
        self._cached = [a for a in self._cached if a.node_id != with_id]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
