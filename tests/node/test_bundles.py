"""Where a node's bundles come from (p2pfaas/node/bundles.py): memory, the disk cache, peers that
announced them (verified: a liar is skipped), the anchor; one fetch shared by concurrent first calls;
the cache kept under its cap, sparing what is warm; revoked bundles refused."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from p2pfaas import codec
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.bundle import BundleCache, make_bundle
from p2pfaas.client import AsyncClient
from p2pfaas.errors import NotFound, SignatureError, Unreachable
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Bundle
from p2pfaas.node.bundles import BundleSource
from tests.functions import write_function
from tests.node.servicekit import request_for, running_node


async def test_concurrent_first_calls_share_one_fetch_and_a_revoked_bundle_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(write_function(tmp_path / "src", "echo"), KeyPair.generate())
    digest = bundle.header.digest
    fetched: list[str] = []
    release = asyncio.Event()

    async def from_anchor(wanted: str) -> Bundle:
        fetched.append(wanted)
        await release.wait()
        if wanted != digest:
            raise NotFound(f"no bundle {wanted}")
        return bundle

    evicted: list[str] = []
    source = BundleSource(
        BundleCache(tmp_path / "cache"), fetch_bundle=from_anchor, on_bundle_evicted=evicted.append
    )
    try:
        waiting = [asyncio.ensure_future(source.get(digest)) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        got = await asyncio.gather(*waiting)
        assert fetched == [digest] and source.anchor_fetches == 1
        assert all(header == bundle.header and path.is_dir() for header, path in got)
        assert (await source.get(digest))[1] == got[0][1] and fetched == [digest]  # from memory
        with pytest.raises(NotFound, match="no provider has bundle"):
            await source.get("cd" * 32)
        assert source.revoke(digest) and not source.revoke(digest)
        assert evicted == [digest] and source.cache.path_for(digest) is None
        with pytest.raises(NotFound, match="removed by its owner"):
            await source.get(digest)
    finally:
        await source.aclose()


async def test_a_bundle_under_another_digest_is_refused_and_not_stored(tmp_path: Path) -> None:
    bundle = make_bundle(write_function(tmp_path / "src", "echo"), KeyPair.generate())
    other = "ef" * 32

    async def from_anchor(wanted: str) -> Bundle:
        return dataclasses.replace(bundle, header=dataclasses.replace(bundle.header, digest=wanted))

    source = BundleSource(BundleCache(tmp_path / "cache"), fetch_bundle=from_anchor)
    with pytest.raises(SignatureError):  # the header's signature covers its digest
        await source.get(other)
    assert source.cache.path_for(other) is None and len(source.cache) == 0
    await source.aclose()


async def test_nodes_serve_bundles_to_peers_that_verify_them(
    anchor: AnchorServer, client: AsyncClient, tmp_path: Path
) -> None:
    echo = await client.deploy(write_function(tmp_path, "echo"))
    digest = echo.header.digest
    async with (
        running_node(anchor.url, tmp_path, "a") as first,
        running_node(anchor.url, tmp_path, "b") as second,
        running_node(anchor.url, tmp_path, "c") as third,
    ):
        cached: list[str] = []
        first.service.bundles.on_bundle_cached = cached.append
        assert (await first.service.invoke(request_for(digest, client.keys, 1))).ok
        assert cached == [digest] and first.service.bundles.anchor_fetches == 1
        async with aiohttp.ClientSession() as session, session.get(f"{first.url}/v1/bundles/{digest}") as got:
            assert got.status == 200 and codec.decode_as(Bundle, await got.read()).header == echo.header
        async with session_get(f"{second.url}/v1/bundles/{digest}") as status:
            assert status == 404  # second does not hold it (yet)

        # With the anchor gone, second fetches from the providers: one lies, one holds nothing, one has it.
        liar = await _lying_provider(digest)
        looked_up: list[str] = []

        async def providers(wanted: str) -> list[str]:
            looked_up.append(wanted)
            return [liar.url, third.url, first.url, second.url]  # itself is skipped

        second.service.bundles.find_providers = providers
        await anchor.__aexit__(None, None, None)
        result = await second.service.invoke(request_for(digest, client.keys, 2))
        await liar.close()
        assert result.ok and looked_up == [digest]
        assert second.service.bundles.peer_fetches == 1 and second.service.bundles.anchor_fetches == 0
        # A bundle nobody holds, with the anchor gone: a clear error naming what was tried.
        with pytest.raises(Unreachable, match=r"anchor is unreachable.*does not hold") as caught:
            await second.service.invoke(request_for("cd" * 32, client.keys, 2))
        assert first.url in str(caught.value) and third.url in str(caught.value)


@contextlib.asynccontextmanager
async def session_get(url: str) -> AsyncIterator[int]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        yield response.status


@dataclasses.dataclass
class _Liar:
    url: str
    runner: Any

    async def close(self) -> None:
        await self.runner.cleanup()


async def _lying_provider(digest: str) -> _Liar:
    """A peer that claims `digest` and serves a different, validly encoded bundle's bytes."""
    from aiohttp import web

    from p2pfaas.bundle import make_bundle

    root = Path(tempfile.mkdtemp(prefix="liar-"))
    other = make_bundle(write_function(root, "boom"), KeyPair.generate())
    shutil.rmtree(root, ignore_errors=True)
    forged = dataclasses.replace(other, header=dataclasses.replace(other.header, digest=digest))

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=codec.encode(forged), content_type="application/x-msgpack")

    app = web.Application()
    app.add_routes([web.get("/v1/bundles/{digest}", serve)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return _Liar(f"http://127.0.0.1:{port}", runner)


async def test_the_bundle_cache_stays_under_its_cap_sparing_warm_functions(
    anchor: AnchorServer, client: AsyncClient, tmp_path: Path
) -> None:
    digests = []
    for name in ("a", "b", "c"):
        directory = write_function(tmp_path / "src", "echo", name=name)
        (directory / "blob.bin").write_bytes(os.urandom(600_000))  # ~600 KB bundles, a 1 MB cache
        digests.append((await client.deploy(directory)).header.digest)
    a, b, c = digests
    async with running_node(anchor.url, tmp_path, "n", bundle_cache_mb=1) as node:
        evicted: list[str] = []
        node.service.bundles.on_bundle_evicted = evicted.append
        for digest in (a, b):
            assert (await node.service.invoke(request_for(digest, client.keys, 1, invocation_id=digest))).ok
        assert evicted == [] and len(node.service.bundles.cache) == 2  # over the cap, but both are warm
        assert isinstance(node.executor, UnsandboxedProcessExecutor)
        node.executor.release(a)  # a's instance goes: nothing pins its bundle any more
        assert (await node.service.invoke(request_for(c, client.keys, 1, invocation_id=c))).ok
        assert evicted == [a] and node.service.bundles.cache.path_for(a) is None
        again = await node.service.invoke(request_for(a, client.keys, 2, invocation_id="again"))
        assert again.ok and node.service.bundles.anchor_fetches == 4  # a fetched a second time
