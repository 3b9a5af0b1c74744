"""A removed function runs nowhere: nodes learn the revoked bundles from the anchor and drop them."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from p2pfaas import rpc, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.errors import NotFound, Refused
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Bundle, InvokeRequest, InvokeResult
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig
from tests.functions import write_function


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1200):  # a minute at most
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within a minute: {what}")


async def test_a_removed_functions_bundle_is_dropped_by_nodes_and_runs_no_more(tmp_path: Path) -> None:
    async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor:
        config = NodeConfig(
            anchor_url=anchor.url, unpaid_owners=True, key_path=tmp_path / "n" / "key",
            work_dir=tmp_path / "n", port=0, revocation_poll_s=0.1,
        )  # fmt: skip
        executor = UnsandboxedProcessExecutor(work_dir=tmp_path / "run")
        async with (
            AsyncClient(anchor.url, KeyPair.generate()) as client,
            NodeDaemon(config, executor=executor) as node,
        ):
            await node.announce()
            directory = write_function(tmp_path, "echo")
            digest = (await client.deploy(directory)).header.digest
            assert (await client.invoke("echo", 1)).value == {"echo": 1}
            assert executor.instance_ids(digest) and node.service.bundles.cache.path_for(digest) is not None

            assert "removed" in await client.remove("echo")
            await until(lambda: digest in node.service.bundles.revoked, "the node learns of the removal")
            assert node.service.bundles.cache.path_for(digest) is None  # no peer can fetch it from here
            await until(lambda: not executor.instance_ids(digest), "its warm instance is gone")
            # A request for the bundle itself, signed by its owner: refused, not run.
            unsigned = InvokeRequest(
                secrets.token_hex(16), digest, b"2", 5.0, None, signer=b"", signature=b""
            )
            request = signing.sign(unsigned, client.keys)
            with pytest.raises(NotFound, match="removed by its owner"):
                await rpc.call(
                    client.session, "POST", f"{node.url}/v1/invoke", InvokeResult, request, timeout_s=30
                )
            with pytest.raises(NotFound, match="removed"):  # the anchor serves it to no node either
                await rpc.call(
                    client.session, "GET", f"{anchor.url}/v1/bundles/{digest}", Bundle, timeout_s=30
                )
            with pytest.raises(Refused, match="new version") as refused:  # the same code again: a new version
                await client.deploy(directory)
            assert refused.value.status == 409
            manifest = directory / "p2pfaas.toml"
            manifest.write_text(manifest.read_text().replace('"1.0.0"', '"1.0.1"'))
            await client.deploy(directory)
            assert (await client.invoke("echo", 3)).value == {"echo": 3}
