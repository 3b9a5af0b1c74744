"""The client library (p2pfaas/client/async_client.py) against a real anchor and real nodes on 127.0.0.1:
a vanished node is skipped, a payload that is not JSON is refused, the sync client works the same."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import pytest

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient, Client
from p2pfaas.errors import LocalError, Unreachable
from p2pfaas.identity import KeyPair
from tests.client.clientkit import node_daemon
from tests.functions import write_function


async def test_a_vanished_node_is_skipped_and_the_call_succeeds_elsewhere(tmp_path: Path) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="p2pc-", dir="/tmp"))
    try:
        async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor:
            async with (
                node_daemon(anchor.url, tmp_path, "a", run_dir) as a,
                AsyncClient(anchor.url, KeyPair.generate(), rng=random.Random(1)) as client,
            ):
                await a.announce()
                b = node_daemon(anchor.url, tmp_path, "b", run_dir)
                async with b:
                    await b.announce()
                    await client.deploy(write_function(tmp_path, "echo"))
                    assert len(await client.nodes()) == 2
                # b is gone but still on the anchor's list (and in the client's cache).
                assert {n.node_id for n in await client.nodes()} == {a.node_id, b.node_id}
                for i in range(6):
                    outcome = await client.invoke("echo", i)
                    assert outcome.node_id == a.node_id and outcome.value == {"echo": i}
            with pytest.raises(Unreachable, match="no node could run"):
                async with AsyncClient(anchor.url, client.keys) as again:
                    await again.invoke("echo", 1)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


async def test_a_payload_that_is_not_json_is_a_local_error(tmp_path: Path) -> None:
    async with (
        AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor,
        AsyncClient(anchor.url, KeyPair.generate()) as client,
    ):
        await client.deploy(write_function(tmp_path, "echo"))
        with pytest.raises(LocalError, match="not JSON"):
            await client.invoke("echo", {1, 2})


def test_the_sync_client_deploys_and_invokes(tmp_path: Path) -> None:
    import asyncio
    import threading

    ready = threading.Event()
    stop: asyncio.Event | None = None
    urls: list[str] = []
    run_dir = Path(tempfile.mkdtemp(prefix="p2ps-", dir="/tmp"))

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor,
            node_daemon(anchor.url, tmp_path, "n", run_dir) as node,
        ):
            await node.announce()
            urls.append(anchor.url)
            ready.set()
            await stop.wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(60)
        with Client(urls[0], KeyPair.generate()) as client:
            client.deploy(write_function(tmp_path, "echo"))
            assert client.invoke("echo", {"a": 1}).value == {"echo": {"a": 1}}
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()
        shutil.rmtree(run_dir, ignore_errors=True)
