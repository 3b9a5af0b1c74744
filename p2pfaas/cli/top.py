"""`p2pfaas top [--node URL ...] [--once]`: a live view of nodes' /metrics in the terminal.

Without `--node`, the nodes are the anchor's list (`--anchor`, or the environment's). Each frame
scrapes every node at once; rates and p50/p99 are over the time since the last frame. `--once`
scrapes twice, `--interval` apart, prints one frame and exits (for scripts and logs). Nodes serve
/metrics to loopback callers only unless started with `--metrics-allow` (docs/metrics.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp

from p2pfaas import rpc, tunnel
from p2pfaas.client.logbook import terminal_safe
from p2pfaas.errors import LocalError
from p2pfaas.messages import NodeList
from p2pfaas.metrics.top import Scrape, function_rows, node_row, scrape

if TYPE_CHECKING:
    from rich.console import Group

__all__ = ["add_top_command", "cmd_top", "render"]

MAX_NODES = 64  # shown at once; the anchor's list is cut to this many
MAX_FUNCTIONS = 20


def cmd_top(args: argparse.Namespace) -> int:
    if not 0.2 <= args.interval <= 3600:
        raise LocalError("--interval must be between 0.2 and 3600 seconds")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_top(args))
    return 0


async def _top(args: argparse.Namespace) -> None:
    from rich.console import Console  # here, not at import: every other command starts faster
    from rich.live import Live

    loop = asyncio.get_running_loop()
    async with tunnel.session() as session:
        urls = list(args.node) or await _listed(session, args.anchor)
        if not urls:
            raise LocalError(f"the anchor at {args.anchor} lists no nodes; name some with --node URL")
        urls = urls[:MAX_NODES]

        async def frame() -> list[Scrape]:
            now = loop.time()
            return list(await asyncio.gather(*(scrape(session, url, at=now) for url in urls)))

        previous = await frame()
        console = Console()
        if args.once:
            await asyncio.sleep(args.interval)
            console.print(render(previous, await frame()))
            return
        with Live(render([], previous), console=console, auto_refresh=False, screen=False) as live:
            while True:
                await asyncio.sleep(args.interval)
                current = await frame()
                live.update(render(previous, current), refresh=True)
                previous = current


async def _listed(session: aiohttp.ClientSession, anchor: str) -> list[str]:
    listing = await rpc.call(session, "GET", f"{anchor}/v1/nodes", NodeList, timeout_s=10.0)
    return [node.url for node in listing.nodes]


def render(previous: Sequence[Scrape], current: Sequence[Scrape]) -> Group:
    """One frame: a table of nodes, then one of functions, then the totals."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    before = {s.url: s for s in previous}
    rows = [node_row(before.get(s.url), s) for s in current]
    nodes = Table(title="nodes", expand=False)
    for name, justify in (
        ("node", "left"), ("slots", "right"), ("queue", "right"), ("warm", "right"),
        ("inv/s", "right"), ("p50 ms", "right"), ("p99 ms", "right"), ("earned", "right"),
    ):  # fmt: skip
        nodes.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        url = Text(terminal_safe(row.url))  # a stranger's text: no markup, no escape sequences
        if row.error:
            nodes.add_row(url, Text(terminal_safe(f"unreachable: {row.error}"[:60]), style="red"), *[""] * 6)
            continue
        load = "green" if row.busy < row.slots else "yellow"
        nodes.add_row(
            url,
            Text(f"{row.busy}/{row.slots}", style=load),
            str(row.queue),
            str(row.warm),
            _number(row.per_s, "{:.1f}"),
            _number(row.p50_s, "{:.1f}", scale=1000),
            _number(row.p99_s, "{:.1f}", scale=1000),
            f"{row.earned_micro / 1e6:.6f}",
        )
    functions = Table(title="functions", expand=False)
    for name in ("function", "calls", "cold starts", "calls/s"):
        functions.add_column(name, justify="left" if name == "function" else "right")
    for f in function_rows(previous, current)[:MAX_FUNCTIONS]:
        functions.add_row(
            Text(terminal_safe(f.name)), str(f.calls), str(f.cold_starts), _number(f.per_s, "{:.1f}")
        )
    live = [r for r in rows if not r.error]
    total = sum(r.per_s or 0.0 for r in live)
    summary = Text(
        f"{len(live)}/{len(rows)} nodes answering, {sum(r.busy for r in live)}/{sum(r.slots for r in live)} "
        f"slots busy, {total:.1f} inv/s"
    )
    return Group(nodes, functions, summary)


def _number(value: float | None, form: str, *, scale: float = 1.0) -> str:
    return "-" if value is None else form.format(value * scale)


def add_top_command(groups: Any, *, default_anchor: Callable[[], str]) -> None:
    top = groups.add_parser("top", help="a live view of nodes' load, latency and earnings (their /metrics)")
    top.set_defaults(handler=cmd_top)
    top.add_argument("--anchor", default=default_anchor(), help="list the nodes from this anchor")
    top.add_argument("--node", action="append", default=[], metavar="URL", help="show this node (repeatable)")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    top.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="between frames")
