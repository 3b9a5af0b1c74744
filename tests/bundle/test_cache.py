"""The node's bundle cache: size-capped, least recently used first, never what is pinned."""

from __future__ import annotations

from pathlib import Path

from p2pfaas.bundle import make_bundle
from p2pfaas.bundle.cache import BundleCache
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Bundle
from tests.functions import write_function


def bundles(root: Path, count: int) -> list[Bundle]:
    keys = KeyPair.generate()
    made = []
    for i in range(count):
        directory = write_function(root, "echo", name=f"fn{i}")
        (directory / "data.bin").write_bytes(bytes([i]) * 50_000)  # incompressible enough: ~50 KB each
        made.append(make_bundle(directory, keys))
    return made


async def test_the_cache_evicts_least_recently_used_bundles_over_its_cap(tmp_path: Path) -> None:
    first, second, third, fourth = bundles(tmp_path / "src", 4)
    cache = BundleCache(tmp_path / "cache")
    for bundle in (first, second, third):
        await cache.store(bundle)
    one = cache.size_bytes() // 3
    cache.max_bytes = 3 * one + one // 2  # room for three and a half
    assert cache.evict_over_cap() == []
    cache.touch(first.header.digest)  # used again: now the second is the least recently used
    await cache.store(fourth)
    evicted = cache.evict_over_cap(pinned={fourth.header.digest})
    assert evicted == [second.header.digest]
    assert cache.path_for(second.header.digest) is None and cache.archive_bytes(second.header.digest) is None
    assert sorted(cache.digests()) == sorted(b.header.digest for b in (first, third, fourth))
    assert cache.size_bytes() <= cache.max_bytes
    # Pinned bundles (running or warm) stay even when the cache cannot get under its cap without them.
    cache.max_bytes = 1
    pinned = {first.header.digest, third.header.digest, fourth.header.digest}
    assert cache.evict_over_cap(pinned=pinned) == []
    assert len(cache) == 3


async def test_archives_are_served_as_stored_and_only_for_complete_trees(tmp_path: Path) -> None:
    [bundle] = bundles(tmp_path / "src", 1)
    cache = BundleCache(tmp_path / "cache")
    digest = bundle.header.digest
    assert cache.archive_bytes(digest) is None and cache.archive_bytes("../../etc/passwd") is None
    await cache.store(bundle)
    stored = cache.archive_bytes(digest)
    assert stored is not None and stored == (tmp_path / "cache" / f"{digest}.bundle").read_bytes()
    (tmp_path / "cache" / digest / ".p2pfaas-digest").unlink()  # a half-removed tree
    assert cache.archive_bytes(digest) is None and cache.digests() == []
