"""A metered network for metrics tests: a real anchor and one real node (process executor, DHT on)
on 127.0.0.1, and a lessee's client."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig


@dataclass
class Net:
    anchor: AnchorServer
    node: NodeDaemon
    client: AsyncClient
    root: Path


@contextlib.asynccontextmanager
async def metered_network(root: Path) -> AsyncIterator[Net]:
    run_dir = Path(tempfile.mkdtemp(prefix="p2pm-", dir="/tmp"))
    try:
        async with AsyncExitStack() as stack:
            anchor = await stack.enter_async_context(
                AnchorServer(f"sqlite+aiosqlite:///{root / 'a.db'}", port=0)
            )
            config = NodeConfig(
                unpaid_owners=True,  # among friends: owners run their own functions unpaid
                anchor_url=anchor.url,
                key_path=root / "n" / "key",
                work_dir=root / "n",
                port=0,
                dht_port=0,
            )
            node = await stack.enter_async_context(
                NodeDaemon(config, executor=UnsandboxedProcessExecutor(work_dir=run_dir))
            )
            await node.announce()
            client = await stack.enter_async_context(AsyncClient(anchor.url, KeyPair.generate()))
            yield Net(anchor, node, client, root)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
