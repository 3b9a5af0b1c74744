"""Nodes for the client tests: a real `NodeDaemon` among friends (owners run their own functions
unpaid) on the unsandboxed process executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
