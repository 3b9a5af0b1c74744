"""The node's dependency layers (`p2pfaas.node.layers`): fetched once, verified against the lock,
unpacked safely, read-only, and evicted least recently used; hostile wheels refused."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from p2pfaas.bundle.lock import Lock, LockedWheel
from p2pfaas.errors import BundleError
from p2pfaas.node.layers import LayerCache, unpack_wheel


def wheel(files: dict[str, bytes], *, links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def locked(name: str, data: bytes) -> LockedWheel:
    return LockedWheel(
        name, "1.0", f"{name}-1.0-py3-none-any.whl", hashlib.sha256(data).hexdigest(), len(data)
    )


class Source:
    """Wheels by SHA-256, counting fetches (the anchor's `GET /v1/wheels/{sha256}` in the node)."""

    def __init__(self, *wheels: bytes) -> None:
        self.wheels = {hashlib.sha256(w).hexdigest(): w for w in wheels}
        self.fetches = 0

    async def __call__(self, wanted: LockedWheel, layer: str = "") -> bytes:
        self.fetches += 1
        await asyncio.sleep(0)
        return self.wheels[wanted.sha256]


PKG = wheel(
    {
        "pkg/__init__.py": b"VALUE = 1\n",
        "pkg-1.0.data/purelib/extra.py": b"X = 2\n",
        "pkg-1.0.data/scripts/tool": b"#!/bin/sh\n",
        "pkg-1.0.dist-info/METADATA": b"Name: pkg\n",
    }
)


async def test_concurrent_first_calls_fetch_a_layer_once_and_get_a_read_only_tree(tmp_path: Path) -> None:
    source = Source(PKG)
    cache = LayerCache(tmp_path / "layers", fetch_wheel=source)
    lock = Lock((locked("pkg", PKG),), "0" * 64)
    sites = await asyncio.gather(*(cache.ensure(lock) for _ in range(5)))
    assert len(set(sites)) == 1 and source.fetches == 1
    site = sites[0]
    assert (site / "pkg" / "__init__.py").read_bytes() == b"VALUE = 1\n"
    assert (site / "extra.py").exists() and not (site / "tool").exists()  # purelib in, scripts out
    assert stat.S_IMODE(site.stat().st_mode) == 0o555
    assert stat.S_IMODE((site / "pkg" / "__init__.py").stat().st_mode) == 0o444
    assert await cache.ensure(lock) == site and source.fetches == 1


async def test_bytes_that_are_not_the_locked_wheel_are_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    other = wheel({"pkg/__init__.py": b"import os; os.system('evil')\n"})
    cache = LayerCache(tmp_path / "layers", fetch_wheel=Source(other))
    lying = Lock((LockedWheel("pkg", "1.0", "pkg-1.0-py3-none-any.whl", hashlib.sha256(other).hexdigest(),
                              len(other) + 1),), "0" * 64)  # fmt: skip
    with pytest.raises(BundleError, match="not the wheel the lock names"):
        await cache.ensure(lying)
    assert list((tmp_path / "layers").iterdir()) == []


async def test_a_layer_over_the_nodes_limit_is_refused_before_any_fetch(tmp_path: Path) -> None:
    source = Source(PKG)
    cache = LayerCache(tmp_path / "layers", fetch_wheel=source, max_layer_bytes=len(PKG) - 1)
    with pytest.raises(BundleError, match="this node takes layers up to"):
        await cache.ensure(Lock((locked("pkg", PKG),), "0" * 64))
    assert source.fetches == 0


def deep(levels: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(30):
            archive.writestr(f"d{i}/" + "b/" * levels, b"")  # directories only: no bytes, all disk
    return buffer.getvalue()


def future_zip() -> bytes:
    """Found by fuzzing (#22, fuzz/targets.py `wheel`): a zip whose central directory asks for a
    newer "version needed to extract" made zipfile raise NotImplementedError, which escaped."""
    data = bytearray(wheel({"a.py": b"x"}))
    entry = data.index(b"PK\x01\x02")
    data[entry + 6 : entry + 8] = (169).to_bytes(2, "little")  # version 16.9
    return bytes(data)


def corrupt_deflate() -> bytes:
    """Found by fuzzing: a deflated member whose data does not inflate raised zlib.error."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.py", b"x = 1\n" * 100)
    data = bytearray(buffer.getvalue())
    start = data.index(b"PK\x03\x04") + 30 + len("a.py")  # the member's compressed bytes
    data[start] = 0xFF  # an invalid deflate block type
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "message", "limit"),
    [
        (corrupt_deflate(), "cannot unpack: error", 1 << 20),
        (future_zip(), "not a wheel: NotImplementedError", 1 << 20),
        (wheel({"../escape.py": b""}), "outside the layer", 1 << 20),
        (wheel({"/abs.py": b""}), "outside the layer", 1 << 20),
        (wheel({"ok.py": b""}, links=("pkg/link",)), "link or a special file", 1 << 20),
        (wheel({"big.bin": b"\0" * 100_000}), "over the layer's limit", 50_000),
        (deep(900), "nested too deep", 1 << 30),
        (deep(20), "past the layer's limit", 1 << 20),  # 30 x 20 directories, charged as disk
        (wheel({"a": b"x", "a/b": b"y"}), "cannot unpack", 1 << 20),
        (b"not a zip", "not a wheel", 1 << 20),
    ],
)
def test_hostile_wheels_are_refused(tmp_path: Path, data: bytes, message: str, limit: int) -> None:
    with pytest.raises(BundleError, match=message):
        unpack_wheel(data, tmp_path / "site", limit=limit)


async def test_least_recently_used_layers_go_first_and_pinned_and_recent_ones_stay(tmp_path: Path) -> None:
    wheels = [wheel({f"m{i}.py": bytes(400)}) for i in range(4)]
    mounted: set[str] = set()
    cache = LayerCache(tmp_path / "layers", fetch_wheel=Source(*wheels), pinned=lambda: mounted)
    locks = [Lock((locked(f"m{i}", w),), "0" * 64) for i, w in enumerate(wheels)]
    for i, lock in enumerate(locks[:3]):
        site = await cache.ensure(lock)
        os.utime(site.parent, (1_000_000 + i, 1_000_000 + i))  # used long ago, in this order
    one = sum(
        os.lstat(os.path.join(d, f)).st_blocks * 512 for d, _, fs in os.walk(site.parent) for f in [*fs, "."]
    )
    cache.max_bytes = int(2.5 * one)
    mounted.add(locks[0].layer_digest)  # the oldest is mounted in a warm instance: it stays
    await cache.ensure(locks[3])  # over the cap: the oldest unmounted ones go, the new one stays
    assert cache.path_for(locks[0].layer_digest) is not None
    assert cache.path_for(locks[1].layer_digest) is None
    assert cache.path_for(locks[3].layer_digest) is not None
