"""Where a node's function bundles come from (issue #3): memory, the disk cache, else fetched by
digest from a few peers that announced them (in random order: they spare the anchor), else the
anchor; whatever arrives is verified before it is stored, and a peer that sends garbage is skipped.

Concurrent first invocations of one function share one fetch, which outlives a cancelled first
caller. Storing evicts over the cache's cap, never a bundle that runs or is warm (`pinned`: its
container has the tree bind-mounted). A revoked bundle (its owner removed the function) is refused
from then on and dropped from the cache.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from p2pfaas.bundle import BundleCache
from p2pfaas.errors import BundleError, DecodeError, NotFound, RemoteError, Unreachable
from p2pfaas.lifecycle import TaskSet
from p2pfaas.messages import Bundle, BundleHeader

log = logging.getLogger(__name__)

BundleFetcher = Callable[[str], Awaitable[Bundle]]  # digest -> Bundle, raises NotFound
PeerBundleFetcher = Callable[[str, str], Awaitable[Bundle]]  # (peer base URL, digest) -> Bundle
MAX_PEER_TRIES = 3  # providers asked before falling back to the anchor


async def peers_to_try(
    find_providers: Callable[[str], Awaitable[list[str]]], digest: str, *, own_url: str, rng: random.Random
) -> list[str]:
    """Up to MAX_PEER_TRIES peers that announced `digest` (a bundle, a layer), not this node, in a
    random order; none when the lookup fails (the caller goes to the anchor)."""
    try:
        peers = [p for p in await find_providers(digest) if p and p != own_url]
    except (RemoteError, TimeoutError) as exc:
        log.info("looking up providers of %s failed: %s", digest[:12], exc)
        return []
    rng.shuffle(peers)
    return peers[:MAX_PEER_TRIES]


@dataclass
class BundleSource:
    """A node process's verified bundles, by digest."""

    cache: BundleCache
    fetch_bundle: BundleFetcher  # from the anchor
    fetch_from_peer: PeerBundleFetcher | None = None
    find_providers: Callable[[str], Awaitable[list[str]]] | None = None  # digest -> peers' base URLs
    on_bundle_cached: Callable[[str], None] | None = None  # announce it (the DHT)
    on_bundle_evicted: Callable[[str], None] | None = None  # withdraw the announcement
    rng: random.Random = field(default_factory=random.Random)
    own_url: Callable[[], str] = lambda: ""  # this node's, never asked for its own bundles
    pinned: Callable[[], set[str]] = set  # digests that run or are warm: never evicted
    peer_fetches: int = 0
    anchor_fetches: int = 0
    revoked: set[str] = field(default_factory=set)  # bundles of functions their owners removed
    _known: dict[str, tuple[BundleHeader, Path]] = field(default_factory=dict)
    _fetches: dict[str, asyncio.Future[tuple[BundleHeader, Path]]] = field(default_factory=dict)
    _fetch_tasks: TaskSet = field(default_factory=TaskSet)  # fetches outlive the caller that started them

    async def aclose(self) -> None:
        """Cancel the fetches still running (their callers wait on them no more)."""
        await self._fetch_tasks.cancel()

    def revoke(self, digest: str) -> bool:
        """Refuse `digest` from now on and drop it from the cache; False if it already was."""
        if digest in self.revoked:
            return False
        self.revoked.add(digest)
        self._known.pop(digest, None)
        if self.cache.remove(digest) and self.on_bundle_evicted is not None:
            self.on_bundle_evicted(digest)
        return True

    async def get(self, digest: str) -> tuple[BundleHeader, Path]:
        """The verified header and extracted code of `digest`: from memory, the disk cache or a fetch."""
        if digest in self.revoked:
            raise NotFound(f"function bundle {digest[:12]} was removed by its owner")
        known = self._known.get(digest)
        if known is not None:
            self.cache.touch(digest)
            return known
        cached = self.cache.archive(digest)
        if cached is not None:
            path = self.cache.path_for(digest) or await self._store(cached)
            self._known[digest] = (cached.header, path)
            return self._known[digest]
        # Concurrent first invocations of one function share a single fetch.
        fetch = self._fetches.get(digest)
        if fetch is None:
            # The fetch outlives a cancelled first caller so later callers can still use it; its
            # result is consumed in the callback so a failure nobody awaits is not reported twice.
            fetch = self._fetch_tasks.spawn(self._fetch_and_store(digest), name=f"fetch {digest[:12]}")
            self._fetches[digest] = fetch
            fetch.add_done_callback(lambda done: self._fetch_done(digest, done))
        return await asyncio.shield(fetch)

    def _fetch_done(self, digest: str, done: asyncio.Future[tuple[BundleHeader, Path]]) -> None:
        self._fetches.pop(digest, None)
        if not done.cancelled():
            done.exception()

    async def _fetch_and_store(self, digest: str) -> tuple[BundleHeader, Path]:
        """Fetch from a few providers (peers first, in random order: they spare the anchor), then
        the anchor. Whatever arrives is verified; a peer that sends garbage is just skipped."""
        problems: list[str] = []
        for peer in await self._providers(digest):
            assert self.fetch_from_peer is not None
            try:
                bundle = await self.fetch_from_peer(peer, digest)
                stored = await self._accept(digest, bundle)
            except (RemoteError, BundleError) as exc:
                problems.append(f"{peer}: {exc}")
                continue
            self.peer_fetches += 1
            return stored
        tried = "".join(f"; {problem}" for problem in problems)
        try:
            bundle = await self.fetch_bundle(digest)  # NotFound -> 404
        except NotFound:
            raise NotFound(f"no provider has bundle {digest}{tried}") from None
        except Unreachable as exc:
            raise Unreachable(f"bundle {digest}: the anchor is unreachable ({exc}){tried}") from None
        self.anchor_fetches += 1
        return await self._accept(digest, bundle)

    async def _providers(self, digest: str) -> list[str]:
        if self.find_providers is None or self.fetch_from_peer is None:
            return []
        return await peers_to_try(self.find_providers, digest, own_url=self.own_url(), rng=self.rng)

    async def _accept(self, digest: str, bundle: Bundle) -> tuple[BundleHeader, Path]:
        if bundle.header.digest != digest:
            raise DecodeError(f"asked for bundle {digest}, got {bundle.header.digest}")
        path = await self._store(bundle)  # verifies; BundleError -> refused
        self._known[digest] = (bundle.header, path)
        return self._known[digest]

    async def _store(self, bundle: Bundle) -> Path:
        digest = bundle.header.digest
        path = await self.cache.store(bundle)
        if self.on_bundle_cached is not None:
            self.on_bundle_cached(digest)
        pinned = {digest, *self.pinned()}
        for evicted in await asyncio.to_thread(self.cache.evict_over_cap, pinned):
            self._known.pop(evicted, None)
            if self.on_bundle_evicted is not None:
                self.on_bundle_evicted(evicted)
        return path
