"""The client library against a real anchor and two real nodes on 127.0.0.1."""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from p2pfaas import rpc, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient, Client
from p2pfaas.errors import LocalError, NotFound, Refused, Unreachable
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack, FunctionChange
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig
from tests.functions import write_function


def _node(anchor_url: str, root: Path, name: str, run_dir: Path) -> NodeDaemon:
    config = NodeConfig(
        unpaid_owners=True,  # among friends: owners run their own functions unpaid
        anchor_url=anchor_url,
        key_path=root / name / "key",
        work_dir=root / name,
        port=0,
    )
    return NodeDaemon(config, executor=UnsandboxedProcessExecutor(work_dir=run_dir / name))


async def test_a_vanished_node_is_skipped_and_the_call_succeeds_elsewhere(tmp_path: Path) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="p2pc-", dir="/tmp"))
    try:
        async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor:
            async with (
                _node(anchor.url, tmp_path, "a", run_dir) as a,
                AsyncClient(anchor.url, KeyPair.generate(), rng=random.Random(1)) as client,
            ):
                await a.announce()
                b = _node(anchor.url, tmp_path, "b", run_dir)
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
            _node(anchor.url, tmp_path, "n", run_dir) as node,
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


async def test_functions_and_their_versions_are_listed(tmp_path: Path) -> None:
    """Issue #16 item 5 (the read side): `fn list`, `fn versions NAME`."""
    async with (
        AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor,
        AsyncClient(anchor.url, KeyPair.generate()) as client,
    ):
        assert await client.functions() == []
        directory = write_function(tmp_path, "echo")
        first = await client.deploy(directory)
        manifest = directory / "p2pfaas.toml"
        manifest.write_text(manifest.read_text().replace('"1.0.0"', '"1.1.0"'))
        (directory / "main.py").write_text("def handle(event):\n    return event\n")
        second = await client.deploy(directory)
        await client.deploy(write_function(tmp_path, "boom"))
        listed = [(f.name, f.version) for f in await client.functions()]
        assert listed == [("boom", "1.0.0"), ("echo", "1.1.0")]
        versions = await client.versions("echo")
        assert [(v.version, v.digest, v.current) for v in versions] == [
            ("1.0.0", first.header.digest, False),
            ("1.1.0", second.header.digest, True),
        ]
        with pytest.raises(NotFound, match="no function named"):
            await client.versions("nothing")


async def test_a_function_rolls_back_and_is_removed_by_its_owners_signed_word(tmp_path: Path) -> None:
    """Issue #16 items 5 and 8: `fn rollback NAME VERSION`, `fn rm NAME`, `NAME@VERSION`; a replayed
    change undoes nothing."""
    async with (
        AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor,
        AsyncClient(anchor.url, KeyPair.generate()) as client,
        _node(anchor.url, tmp_path, "n", tmp_path / "run") as node,
    ):
        await node.announce()
        directory = write_function(tmp_path, "echo")
        first = await client.deploy(directory)
        manifest = directory / "p2pfaas.toml"
        manifest.write_text(manifest.read_text().replace('"1.0.0"', '"2.0.0"'))
        (directory / "main.py").write_text("def handle(event):\n    return {'v2': event}\n")
        await client.deploy(directory)
        assert (await client.invoke("echo", 1)).value == {"v2": 1}
        assert (await client.invoke("echo@1.0.0", 1)).value == {"echo": 1}  # a version by name
        with pytest.raises(NotFound, match=r"at version '9\.9'"):
            await client.invoke("echo@9.9", 1)
        assert first.header.digest[:16] in await client.rollback("echo", "1.0.0")
        assert (await client.invoke("echo", 1)).value == {"echo": 1}
        with pytest.raises(NotFound, match="no deployed version"):
            await client.rollback("echo", "3.0.0")
        # Someone replays the owner's signed rollback after a later change: refused.
        replay = signing.sign(FunctionChange("echo", "1.0.0", time.time() - 1, b"", b""), client.keys)
        await client.rollback("echo", "2.0.0")
        with pytest.raises(Refused, match="before its last change"):
            await rpc.call(
                client.session, "POST", f"{anchor.url}/v1/functions/changes", Ack, replay, timeout_s=10
            )
        stranger = AsyncClient(anchor.url, KeyPair.generate())
        async with stranger:
            with pytest.raises(NotFound):  # a stranger's removal touches only its own (absent) function
                await stranger.remove("echo")
        assert "removed" in await client.remove("echo")
        for removed in ("echo", "echo@1.0.0"):
            with pytest.raises(NotFound):
                await client.invoke(removed, 1)
        assert await client.functions() == []
