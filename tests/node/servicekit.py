"""Nodes for tests of what a node does with calls and bundles: a real `NodeDaemon` on the
unsandboxed process executor (fast, everywhere), and requests signed for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from p2pfaas import signing
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeRequest
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig


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
