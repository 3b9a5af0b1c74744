"""Atomic extraction and the node's bundle cache: one store per digest at a time, forgeries refused,
size-capped, least recently used first, never what is pinned."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from p2pfaas.bundle import (
    BundleCache,
    extract_bundle,
    make_bundle,
)
from p2pfaas.bundle import cache as bundle_cache
from p2pfaas.errors import BundleError, SignatureError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Bundle
from tests.bundle.conftest import (
    ATTACKER,
    FILES,
    LESSEE,
    files_under,
    member,
    signed,
    tar_gz,
    write_tree,
)
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


def test_extract_refuses_an_occupied_destination(demo: Bundle, tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "mine.txt").write_text("keep me")
    with pytest.raises(BundleError, match="does not hold bundle"):
        extract_bundle(demo, tmp_path / "tree")
    assert (tmp_path / "tree" / "mine.txt").read_text() == "keep me"


def test_concurrent_extractions_of_one_bundle_all_succeed(demo: Bundle, tmp_path: Path) -> None:
    destination = tmp_path / "tree"
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: extract_bundle(demo, destination), range(8)))
    assert results == [destination] * 8
    assert [p.name for p in tmp_path.iterdir()] == ["tree"]


def test_tarfile_data_filter_also_guards_extraction(
    demo: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Disable our member checks to show the second line of defence holds on its own.
    monkeypatch.setattr(bundle_cache, "verified_tar", lambda b: gzip.decompress(b.archive))
    evil = signed(tar_gz(member("../escape", b"x")))
    with pytest.raises(BundleError, match="extraction refused"):
        extract_bundle(evil, tmp_path / "box" / "tree")
    assert files_under(tmp_path) == [tmp_path / "box"]


def watch_extractions(monkeypatch: pytest.MonkeyPatch, during: Callable[[], object]) -> list[int]:
    """Wrap the cache's extract_bundle; return a list that records how many ran at once."""
    active = [0]
    peaks: list[int] = []
    lock = threading.Lock()
    real = bundle_cache.extract_bundle

    def watched(bundle: Bundle, destination: Path) -> Path:
        with lock:
            active[0] += 1
            peaks.append(active[0])
        try:
            during()
            return real(bundle, destination)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(bundle_cache, "extract_bundle", watched)
    return peaks


async def test_cache_serialises_concurrent_stores_of_one_digest(
    demo: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peaks = watch_extractions(monkeypatch, lambda: time.sleep(0.02))
    cache = BundleCache(tmp_path / "cache")
    digest = demo.header.digest
    assert (len(cache), cache.path_for(digest), cache.archive(digest)) == (0, None, None)

    paths = await asyncio.gather(*(cache.store(demo) for _ in range(5)))

    assert paths == [tmp_path / "cache" / digest] * 5
    assert max(peaks) == 1
    assert len(cache) == 1
    assert cache.path_for(digest) == paths[0]
    assert cache.archive(digest) == demo
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [digest, f"{digest}.bundle"]


async def test_cache_stores_different_digests_in_parallel(
    demo: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    barrier = threading.Barrier(2, timeout=10)  # passes only if both stores are in flight at once
    watch_extractions(monkeypatch, barrier.wait)
    other = make_bundle(write_tree(tmp_path / "other", {**FILES, "extra.txt": b"x"}), LESSEE)
    cache = BundleCache(tmp_path / "cache")
    await asyncio.gather(cache.store(demo), cache.store(other))
    assert len(cache) == 2


async def test_cache_rejects_a_forgery_then_accepts_the_real_bundle(demo: Bundle, tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache")
    forged = dataclasses.replace(demo, header=dataclasses.replace(demo.header, signer=ATTACKER.public.raw))
    with pytest.raises(SignatureError):
        await cache.store(forged)
    assert len(cache) == 0 and cache.archive(demo.header.digest) is None
    assert await cache.store(demo) == cache.path_for(demo.header.digest)


async def test_cache_ignores_malformed_digests_and_damaged_archives(demo: Bundle, tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache")
    await cache.store(demo)
    assert cache.path_for("../../etc") is None and cache.archive("../../etc") is None
    digest = demo.header.digest
    (tmp_path / "cache" / f"{digest}.bundle").write_bytes(b"garbage")
    assert cache.archive(digest) is None
    await cache.store(demo)  # rewrites the damaged copy
    assert cache.archive(digest) == demo
    shutil.rmtree(tmp_path / "cache" / digest)
    assert cache.path_for(digest) is None and len(cache) == 0
