"""NodeService's hooks on real nodes over loopback: authorization, receipts with prices, admission
("busy" naming a peer), and bundles fetched from peers that announced them.

The nodes use the unsandboxed process executor (fast, everywhere); the Docker executor runs the
same service in tests/node/test_node_api.py and tests/exec.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from p2pfaas import codec, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.errors import NotFound, Refused, Unreachable
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.messages import (
    Bundle,
    BundleHeader,
    Delegation,
    ErrorReply,
    InvokeRequest,
    InvokeResult,
    Receipt,
    request_sha256,
)
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig
from p2pfaas.pricing import Prices
from p2pfaas.rpc import Forbidden
from tests.functions import write_function


@contextlib.asynccontextmanager
async def running_node(anchor_url: str, root: Path, name: str, **config: Any) -> AsyncIterator[NodeDaemon]:
    run_dir = Path(tempfile.mkdtemp(prefix="p2ps-", dir="/tmp"))  # unix socket paths are short
    node_config = NodeConfig(
        unpaid_owners=True,  # among friends: owners run their own functions unpaid
        anchor_url=anchor_url,
        key_path=root / name / "node.key",
        work_dir=root / name,
        executor="process",
        allow_unsandboxed=True,
        announce_interval_s=3600,
        **config,
    )
    try:
        async with NodeDaemon(node_config, executor=UnsandboxedProcessExecutor(work_dir=run_dir)) as node:
            yield node
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture
async def anchor(tmp_path: Path) -> AsyncIterator[AnchorServer]:
    async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}", port=0) as server:
        yield server


@pytest.fixture
async def client(anchor: AnchorServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(anchor.url, KeyPair.generate()) as lessee:
        yield lessee


async def until(condition: Callable[[], bool]) -> None:
    """Wait (a few seconds at most) for `condition`, polled: the state it watches has no event."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


def request_for(
    digest: str, keys: KeyPair, payload: object, *, invocation_id: str = "inv-1"
) -> InvokeRequest:
    return signing.sign(
        InvokeRequest(
            invocation_id=invocation_id,
            digest=digest,
            payload=json.dumps(payload).encode(),
            timeout_s=10.0,
            voucher=None,
            signer=b"",
            signature=b"",
        ),
        keys,
    )


async def test_every_run_gets_a_signed_priced_receipt_handed_to_the_hook(
    anchor: AnchorServer, client: AsyncClient, tmp_path: Path
) -> None:
    echo = await client.deploy(write_function(tmp_path, "echo"))
    boom = await client.deploy(write_function(tmp_path, "boom"))
    prices = Prices(per_cpu_s_micro=1_000_000, per_gb_s_micro=1_000)
    async with running_node(
        anchor.url, tmp_path, "n", price_per_cpu_s_micro=1_000_000, price_per_gb_s_micro=1_000
    ) as node:
        sent: list[Receipt] = []
        node.service.on_receipt = sent.append
        ok = await node.service.invoke(request_for(echo.header.digest, client.keys, {"x": 1}))
        failed = await node.service.invoke(
            request_for(boom.header.digest, client.keys, 7, invocation_id="inv-2")
        )
    assert ok.ok and not failed.ok and [r.invocation_id for r in sent] == ["inv-1", "inv-2"]
    for result, receipt in zip((ok, failed), sent, strict=True):
        assert result.receipt == receipt
        assert signing.verify(receipt).key_id == node.node_id
        assert receipt.lessee_key == client.keys.public.raw and receipt.voucher_id == ""
        assert receipt.digest == result.digest and receipt.ok == result.ok
        assert receipt.peak_memory_mb > 5  # a Python interpreter's resident memory, from /proc
        assert receipt.price_micro == prices.charge_micro(
            cpu_ms=receipt.cpu_ms, peak_memory_mb=receipt.peak_memory_mb, wall_ms=receipt.wall_ms
        )
    assert sent[0].result_sha256 == hashlib.sha256(ok.output).digest() and sent[1].result_sha256 == b""
    # Each receipt names the request it ran (for replication votes), whatever the outcome.
    assert sent[0].request_sha256 == request_sha256(request_for(echo.header.digest, client.keys, {"x": 1}))
    assert sent[1].request_sha256 == request_sha256(request_for(boom.header.digest, client.keys, 7))


async def test_the_authorize_hook_decides_who_may_run(
    anchor: AnchorServer, client: AsyncClient, tmp_path: Path
) -> None:
    echo = await client.deploy(write_function(tmp_path, "echo"))
    stranger = KeyPair.generate()
    async with running_node(anchor.url, tmp_path, "n") as node:
        with pytest.raises(Forbidden, match="owner"):
            await node.service.invoke(request_for(echo.header.digest, stranger, 1))
        seen: list[tuple[str, bytes]] = []

        def allow_stranger(
            request: InvokeRequest, header: BundleHeader, caller: bytes, delegations: tuple[Delegation, ...]
        ) -> None:
            seen.append((header.digest, caller))
            if caller != stranger.public.raw:
                raise Forbidden("only the stranger today")

        node.service.authorize = allow_stranger
        result = await node.service.invoke(request_for(echo.header.digest, stranger, 1))
        assert result.ok and result.receipt is not None and result.receipt.lessee_key == stranger.public.raw
        with pytest.raises(Forbidden, match="stranger today"):
            await node.service.invoke(request_for(echo.header.digest, client.keys, 1))
    assert seen == [(echo.header.digest, stranger.public.raw), (echo.header.digest, client.keys.public.raw)]


async def _post(url: str, body: bytes) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, data=body) as response:
        return response.status, await response.read()


async def test_a_full_node_answers_busy_naming_a_peer_and_queued_work_runs_later(
    anchor: AnchorServer, client: AsyncClient, tmp_path: Path
) -> None:
    sleepy = await client.deploy(write_function(tmp_path, "sleepy", timeout_s=10))
    digest = sleepy.header.digest
    async with running_node(anchor.url, tmp_path, "n", slots=1, queue_size=1) as node:
        node.service.admission.suggest_peer = lambda: "http://127.0.0.1:9/peer"
        running = asyncio.create_task(node.service.invoke(request_for(digest, client.keys, {"s": 0.5})))
        await until(lambda: not node.service.admission.free_slots())
        queued = asyncio.create_task(
            node.service.invoke(request_for(digest, client.keys, {"s": 0}, invocation_id="inv-2"))
        )
        await until(lambda: node.service.admission.queue_length(digest) == 1)
        status, answer = await _post(
            f"{node.url}/v1/invoke",
            codec.encode(request_for(digest, client.keys, {"s": 0}, invocation_id="3")),
        )
        assert (await running).ok and (await queued).ok
        assert node.service.stats.busy == 1 and node.service.stats.invocations == 2
    reply = codec.decode_as(ErrorReply, answer)
    assert status == 503 and reply.code == "busy"
    assert "queue is full" in reply.reason and "http://127.0.0.1:9/peer" in reply.reason


async def test_a_function_larger_than_the_node_is_refused_with_413(
    anchor: AnchorServer, client: AsyncClient, tmp_path: Path
) -> None:
    big = await client.deploy(write_function(tmp_path, "echo", memory_mb=512))
    async with running_node(anchor.url, tmp_path, "n", memory_mb=256) as node:
        status, answer = await _post(
            f"{node.url}/v1/invoke", codec.encode(request_for(big.header.digest, client.keys, 1))
        )
    assert status == 413 and "lends 256 MB" in codec.decode_as(ErrorReply, answer).reason


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
        first.service.on_bundle_cached = cached.append
        assert (await first.service.invoke(request_for(digest, client.keys, 1))).ok
        assert cached == [digest] and first.service.stats.anchor_fetches == 1
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

        second.service.find_providers = providers
        await anchor.__aexit__(None, None, None)
        result = await second.service.invoke(request_for(digest, client.keys, 2))
        await liar.close()
        assert result.ok and looked_up == [digest]
        assert second.service.stats.peer_fetches == 1 and second.service.stats.anchor_fetches == 0
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


async def test_status_of_a_refusal_is_kept_for_the_router() -> None:
    # Busy is a Refused with status 503 (what the router and clients branch on).
    from p2pfaas.errors import Busy

    busy = Busy("full", peer="http://x")
    assert isinstance(busy, Refused) and busy.status == 503 and busy.peer == "http://x"
    assert isinstance(InvokeResult, type)


async def test_a_request_is_verified_once_per_object_never_by_content(
    anchor: AnchorServer, client: AsyncClient, tmp_path: Path
) -> None:
    from p2pfaas.errors import SignatureError

    echo = await client.deploy(write_function(tmp_path, "echo"))
    async with running_node(anchor.url, tmp_path, "n") as node:
        request = request_for(echo.header.digest, client.keys, 1)
        assert node.service.verify_request(request).raw == client.keys.public.raw
        assert node.service.verify_request(request).raw == client.keys.public.raw  # from the cache
        tampered = dataclasses.replace(request, payload=b"2")  # same signature, other content
        with pytest.raises(SignatureError):
            node.service.verify_request(tampered)
        with pytest.raises(SignatureError):
            await node.service.invoke(tampered)
        assert (await node.service.invoke(request)).ok


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
        node.service.on_bundle_evicted = evicted.append
        for digest in (a, b):
            assert (await node.service.invoke(request_for(digest, client.keys, 1, invocation_id=digest))).ok
        assert evicted == [] and len(node.service.cache) == 2  # over the cap, but both are warm
        assert isinstance(node.executor, UnsandboxedProcessExecutor)
        node.executor.release(a)  # a's instance goes: nothing pins its bundle any more
        assert (await node.service.invoke(request_for(c, client.keys, 1, invocation_id=c))).ok
        assert evicted == [a] and node.service.cache.path_for(a) is None
        again = await node.service.invoke(request_for(a, client.keys, 2, invocation_id="again"))
        assert again.ok and node.service.stats.anchor_fetches == 4  # a fetched a second time


async def test_spec_for_builds_the_spec_an_invocation_runs_with_so_a_prewarm_serves_it(
    anchor: AnchorServer, client: AsyncClient, tmp_path: Path
) -> None:
    """Placement pre-warms through `spec_for`: the manifest's concurrency and limits must reach the
    executor exactly as they do on the invoke path, or the pre-warmed instance would not be reused."""
    directory = write_function(tmp_path, "echo", memory_mb=96, timeout_s=7.0)
    manifest = directory / "p2pfaas.toml"
    manifest.write_text(manifest.read_text() + "concurrency = 3\n")
    echo = await client.deploy(directory)
    async with running_node(anchor.url, tmp_path, "n") as node:
        spec = await node.service.spec_for(echo.header.digest)  # fetched from the anchor, verified
        assert (spec.digest, spec.handler, spec.memory_mb, spec.timeout_s) == (
            echo.header.digest,
            "main:handle",
            96,
            7.0,
        )
        assert spec.concurrency == 3 and spec.cpus == node.service.cpus_per_instance
        assert (spec.code_dir / "main.py").is_file()
        executor = node.service.executor
        assert isinstance(executor, UnsandboxedProcessExecutor)
        await executor.prewarm(spec, 1)
        result = await node.service.invoke(request_for(echo.header.digest, client.keys, {"x": 1}))
        assert result.ok and not result.cold  # the invocation found the pre-warmed instance
        with pytest.raises(NotFound, match="no provider has bundle"):
            await node.service.spec_for("00" * 32)
