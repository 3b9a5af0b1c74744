"""NodeService's hooks on real nodes over loopback: authorization, receipts with prices, admission
("busy" naming a peer), and bundles fetched from peers that announced them.

The nodes use the unsandboxed process executor (fast, everywhere); the Docker executor runs the
same service in tests/node/test_node_api.py and tests/exec.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

import aiohttp
import pytest

from p2pfaas import codec, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.errors import NotFound, Refused
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.messages import (
    BundleHeader,
    Delegation,
    ErrorReply,
    InvokeRequest,
    InvokeResult,
    Receipt,
    request_sha256,
)
from p2pfaas.pricing import Prices
from p2pfaas.rpc import Forbidden
from tests.functions import write_function
from tests.node.servicekit import request_for, running_node, until


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
