"""The kit of the worker-process tests: a node of two processes behind a real anchor, and requests
posted to it."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from p2pfaas import codec, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeRequest
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.executors import make_executor
from p2pfaas.node.settings import NodeConfig
from p2pfaas.node.workers.pool import WorkerPool
from p2pfaas.rpc import CONTENT_TYPE


@dataclass
class Net:
    node: NodeDaemon
    pool: WorkerPool
    client: AsyncClient
    keys: KeyPair
    root: Path


@pytest.fixture
async def net(executor_kind: str) -> AsyncIterator[Net]:
    # Unix socket paths are limited to 107 bytes: keep the work directory short.
    root = Path(tempfile.mkdtemp(prefix="p2pw-", dir="/tmp"))
    keys = KeyPair.generate()
    try:
        async with AnchorServer(f"sqlite+aiosqlite:///{root / 'anchor.db'}", port=0) as anchor:
            config = NodeConfig(
                unpaid_owners=True,  # among friends: owners run their own functions unpaid
                anchor_url=anchor.url,
                key_path=root / "node" / "node.key",
                work_dir=root / "node",
                executor=executor_kind,
                allow_unsandboxed=True,
                slots=4,
                workers=2,
                drain_deadline_s=10.0,
            )
            node_id = KeyPair.load_or_create(config.key_path).key_id
            executor = await asyncio.to_thread(make_executor, config, owner_id=node_id)
            async with (
                NodeDaemon(config, executor=executor) as node,
                AsyncClient(anchor.url, keys) as client,
            ):
                assert node.workers is not None
                await node.announce()
                yield Net(node, node.workers, client, keys, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def request_body(net: Net, digest: str, event: object) -> bytes:
    request = InvokeRequest(
        invocation_id=uuid.uuid4().hex,
        digest=digest,
        payload=json_body(event),
        timeout_s=30.0,
        voucher=None,
        signer=b"",
        signature=b"",
    )
    return codec.encode(signing.sign(request, net.keys))


def json_body(event: object) -> bytes:
    return json.dumps(event).encode()


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> bytes:
    async with session.post(url, data=body, headers={"Content-Type": CONTENT_TYPE}) as answer:
        assert answer.status == 200, await answer.read()
        return await answer.read()
