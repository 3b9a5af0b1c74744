"""The lessee's registry calls (p2pfaas/client/registry.py) against a real anchor (and a node, to run
what a rollback points at): functions and versions listed, rollback, removal, `name@version`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from p2pfaas import rpc, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.errors import NotFound, Refused
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack, FunctionChange
from tests.client.clientkit import node_daemon
from tests.functions import write_function


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
        node_daemon(anchor.url, tmp_path, "n", tmp_path / "run") as node,
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
