"""`p2pfaas node drain`: ask a running node to drain, then wait until it has stopped.

The request is a `DrainRequest` signed with the node's own key (read from the node's key file, so
only its operator can drain it), posted to the node's /v1/drain. The node's URL comes from `--url`
or from the `node.url` file the node writes into its work directory when it starts. The drain
itself (announce, hand the queue over, finish in-flight work, exit) is `NodePlacement.drain`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from p2pfaas import rpc, signing
from p2pfaas.clock import wall_time
from p2pfaas.errors import LocalError, P2PFaaSError, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack, NodeStatus
from p2pfaas.placement.wire import DrainRequest

URL_FILE = "node.url"


def write_url(work_dir: Path, url: str) -> None:
    """Record where the node serves, for `p2pfaas node drain` (called by the node at start)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / URL_FILE).write_text(url + "\n")


async def drain_node(url: str, keys: KeyPair, *, deadline_s: float, wait: bool = True) -> str:
    """Ask the node at `url` to drain; with `wait`, return once it no longer answers."""
    msg = signing.sign(
        DrainRequest(drain_deadline_s=deadline_s, issued_at=wall_time(), signer=b"", signature=b""), keys
    )
    async with aiohttp.ClientSession() as session:
        ack = await rpc.call(session, "POST", f"{url}/v1/drain", Ack, msg, timeout_s=10.0)
        if not wait:
            return ack.detail
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline_s + 30.0
        while loop.time() < give_up:
            try:
                await rpc.call(session, "GET", f"{url}/v1/status", NodeStatus, timeout_s=5.0)
            except Unreachable:
                return "drained and stopped"
            await asyncio.sleep(0.5)
    raise P2PFaaSError(f"node {url} was still answering {deadline_s + 30:g} s after it was asked to drain")


def read_url(work_dir: Path) -> str:
    """Where the node of `work_dir` serves (`write_url`), or LocalError when it has not said."""
    try:
        return (work_dir / URL_FILE).read_text().strip()
    except OSError:
        raise LocalError(f"no --url given and no {work_dir / URL_FILE}: is the node running?") from None


def _cmd_drain(args: argparse.Namespace) -> int:
    work_dir = Path(args.work_dir or Path(args.home) / "node")
    url = args.url or read_url(work_dir)
    keys = KeyPair.load(Path(args.key or work_dir / "node.key"))
    started = time.monotonic()
    outcome = asyncio.run(drain_node(url, keys, deadline_s=args.deadline, wait=not args.no_wait))
    print(f"node {keys.key_id} at {url}: {outcome} ({time.monotonic() - started:.1f} s)")
    return 0


def add_placement_arguments(run: Any) -> None:
    """`p2pfaas node run` options for placement, gossip and draining."""
    from p2pfaas.placement.policy import POLICIES

    run.add_argument("--placement", choices=sorted(POLICIES), default="ours", help="placement policy")
    run.add_argument("--gossip-period", type=float, default=2.0, help="seconds between gossip rounds")
    run.add_argument("--gossip-fanout", type=int, default=2, help="neighbours per gossip round")
    run.add_argument(
        "--drain-deadline", type=float, default=60.0, help="seconds in-flight work may take on SIGTERM"
    )


def placement_options(args: argparse.Namespace) -> dict[str, Any]:
    """NodeConfig fields from the options above (checked again when the node starts)."""
    return {
        "placement": args.placement,
        "gossip_period_s": args.gossip_period,
        "gossip_fanout": args.gossip_fanout,
        "drain_deadline_s": args.drain_deadline,
    }


def register(node_commands: Any, *, home: Path) -> None:
    """Add `drain` to the `p2pfaas node` subcommands."""
    text = "drain this node: stop taking work, hand queued work to peers, finish in-flight work, exit"
    drain = node_commands.add_parser("drain", help=text, description=text)
    drain.set_defaults(handler=_cmd_drain, home=str(home))
    drain.add_argument("--work-dir", help="the node's work directory (default: ~/.p2pfaas/node)")
    drain.add_argument("--key", help="node key file (default: WORK_DIR/node.key)")
    drain.add_argument("--url", help="the node's URL (default: read from WORK_DIR/node.url)")
    drain.add_argument("--deadline", type=float, default=60.0, help="seconds in-flight work may take")
    drain.add_argument("--no-wait", action="store_true", help="return once the node has started draining")
