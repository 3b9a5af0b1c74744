"""Nodes for the client tests: a real `NodeDaemon` among friends (owners run their own functions
unpaid) on the unsandboxed process executor."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig


def node_daemon(anchor_url: str, root: Path, name: str, run_dir: Path, **options: Any) -> NodeDaemon:
    config = NodeConfig(
        unpaid_owners=True,  # among friends: owners run their own functions unpaid
        anchor_url=anchor_url,
        key_path=root / name / "key",
        work_dir=root / name,
        port=0,
        **options,
    )
    return NodeDaemon(config, executor=UnsandboxedProcessExecutor(work_dir=run_dir / name))


@asynccontextmanager
async def dht_network(
    root: Path, names: tuple[str, ...]
) -> AsyncIterator[tuple[AnchorServer, list[NodeDaemon]]]:
    """A real anchor with its bootstrap DHT node, and a node per name on that DHT (all on loopback)."""
    run_dir = Path(tempfile.mkdtemp(prefix="p2pd-", dir="/tmp"))  # short: unix socket paths
    try:
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{root / 'a.db'}", port=0, dht_port=0) as anchor,
            contextlib.AsyncExitStack() as stack,
        ):
            assert anchor.dht is not None
            seeds = (anchor.dht.address,)
            nodes = [
                await stack.enter_async_context(
                    node_daemon(anchor.url, root, n, run_dir, dht_port=0, peers=seeds)
                )
                for n in names
            ]
            yield anchor, nodes
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
