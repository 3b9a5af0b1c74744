"""`p2pfaas node status [--work-dir D | --url U]`: what a volunteer's running node is doing; and
`p2pfaas node pause [--reason R]` / `node resume` (node/lending.py).

It asks the node itself (its `/v1/status` and `/metrics`, served to this machine: loopback) and the
anchor (whether it lists the node, and the node's reputation): state, slots, queue, warm
instances, invocations, what the anchor has paid for its receipts, its agreement streak, and how it
is reached (direct, TLS, or through a relay). A node that does not answer is reported as stopped
(exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiohttp

from p2pfaas import rpc
from p2pfaas.errors import P2PFaaSError
from p2pfaas.messages import Ack, NodeList, NodeStatus
from p2pfaas.metrics.top import node_row, scrape
from p2pfaas.node.drain import read_url
from p2pfaas.relay import is_relayed
from p2pfaas.trust.wire import NodeReputation

__all__ = ["add_status_command", "cmd_node_lending", "cmd_node_status", "status_lines"]


def cmd_node_status(args: argparse.Namespace) -> int:
    work_dir = Path(args.work_dir or Path(args.home) / "node")
    url = args.url or read_url(work_dir)
    lines, running = asyncio.run(status_lines(url, args.anchor))
    print("\n".join(lines))
    return 0 if running else 1


async def status_lines(url: str, anchor_url: str) -> tuple[list[str], bool]:
    """The report's lines, and whether the node answered."""
    async with aiohttp.ClientSession() as session:
        try:
            status = await rpc.call(session, "GET", f"{url}/v1/status", NodeStatus, timeout_s=5.0)
        except P2PFaaSError as error:
            return [f"node at {url}: stopped (it does not answer: {error})"], False
        figures = node_row(None, await scrape(session, url, at=time.monotonic()))
        listed, reputation = await _from_anchor(session, anchor_url, status.node_id)
    if is_relayed(status.url):
        how = "through a relay (behind NAT)"
    else:
        how = "directly, TLS pinned to its key" if status.url.startswith("https") else "directly, plain HTTP"
    state = f"away: {status.away}" if status.away else "serving"
    lines = [
        f"node {status.node_id} at {status.url}",
        f"  state        {state} ({status.executor}{'' if status.sandboxed else ', UNSANDBOXED'})",
        f"  reached      {how}; {'listed' if listed else 'NOT listed'} by the anchor at {anchor_url}",
        f"  invocations  {status.invocations} since it started, {status.in_flight} running now",
    ]
    if figures.error:
        lines.append(f"  figures      not readable here ({figures.error}): /metrics is for loopback callers")
    else:
        lines += [
            f"  slots        {figures.busy}/{figures.slots} busy, {figures.queue} queued, "
            f"{figures.warm} warm instances, {status.cached_bundles} bundles cached",
            f"  paid         {figures.earned_micro / 1e6:.6f} credits for its receipts since it started",
        ]
    if reputation is not None:
        lines.append(
            f"  reputation   streak {reputation.consecutive_valid}, agreed {reputation.agreements}, "
            f"disagreed {reputation.disagreements}, lies {reputation.lies}, "
            f"runs alone {reputation.trust_probability:.0%}"
        )
    return lines, True


async def _from_anchor(
    session: aiohttp.ClientSession, anchor_url: str, node_id: str
) -> tuple[bool, NodeReputation | None]:
    listed, reputation = False, None
    with contextlib.suppress(P2PFaaSError):
        nodes = await rpc.call(session, "GET", f"{anchor_url}/v1/nodes", NodeList, timeout_s=5.0)
        listed = any(n.node_id == node_id for n in nodes.nodes)
    with contextlib.suppress(P2PFaaSError):
        url = f"{anchor_url}/v1/reputation/{node_id}"
        reputation = await rpc.call(session, "GET", url, NodeReputation, timeout_s=5.0)
    return listed, reputation


def cmd_node_lending(args: argparse.Namespace) -> int:
    """`node pause [--reason R]` / `node resume`: signed with the node's key, sent to the node."""
    from p2pfaas.identity import KeyPair
    from p2pfaas.node.lending import lending_change

    work_dir = Path(args.work_dir or Path(args.home) / "node")
    url = args.url or read_url(work_dir)
    keys = KeyPair.load(Path(args.key or work_dir / "node.key"))
    change = lending_change(keys, paused=args.node_command == "pause", reason=getattr(args, "reason", ""))

    async def send() -> str:
        async with aiohttp.ClientSession() as session:
            ack = await rpc.call(session, "POST", f"{url}/v1/lending", Ack, change, timeout_s=15.0)
            return ack.detail

    print(f"node {keys.key_id} at {url}: {asyncio.run(send())}")
    return 0


def add_status_command(node_commands: Any, *, home: Path, default_anchor: str) -> None:
    status = node_commands.add_parser("status", help="what your running node is doing")
    status.set_defaults(handler=cmd_node_status, home=str(home))
    status.add_argument("--work-dir", help="the node's work directory (default: ~/.p2pfaas/node)")
    status.add_argument("--url", help="the node's URL (default: read from WORK_DIR/node.url)")
    status.add_argument("--anchor", default=default_anchor, help="anchor URL (default: %(default)s)")
    for name, what in (("pause", "stop taking work (running calls finish, the queue goes to peers)"),
                       ("resume", "take work again after `node pause`")):  # fmt: skip
        change = node_commands.add_parser(name, help=what)
        change.set_defaults(handler=cmd_node_lending, home=str(home))
        change.add_argument("--work-dir", help="the node's work directory (default: ~/.p2pfaas/node)")
        change.add_argument("--url", help="the node's URL (default: read from WORK_DIR/node.url)")
        change.add_argument("--key", help="the node's key (default: WORK_DIR/node.key)")
        if name == "pause":
            change.add_argument("--reason", default="", help="what `node status` says while paused")
