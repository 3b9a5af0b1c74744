"""`p2pfaas account usage [--since DATE] [--by function|day] [--csv]`: a lessee's bill, from the ledger.

Calls, CPU seconds, GB-seconds and credits per function (`name@version`) or per UTC day, then where
the account's voucher credits went: bought = spent + returned + held. Without `--since`, the lines
sum to what was spent.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import sys
from collections.abc import Callable
from typing import Any

from p2pfaas.cli.tables import print_table
from p2pfaas.errors import LocalError
from p2pfaas.money import MICRO

__all__ = ["add_earnings_command", "add_usage_command", "cmd_earnings", "cmd_usage", "parse_since"]


def parse_since(text: str) -> float:
    """`YYYY-MM-DD` (UTC midnight) or an ISO date and time (UTC unless it says otherwise)."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise LocalError(
            f"--since wants a date like 2026-12-01 or 2026-12-01T08:00, not {text[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(moment.timestamp(), 0.0)


def _credits(micro: int) -> str:
    return f"{micro / MICRO:.6f}"


def cmd_usage(args: argparse.Namespace, run: Callable[..., int]) -> int:
    since = parse_since(args.since) if args.since else 0.0

    async def work(client: Any) -> int:
        report = await client.usage(since=since, by=args.by)
        _print_lines(args.by, report.lines, as_csv=args.csv)
        if not args.csv:
            print(
                f"vouchers: bought {_credits(report.bought_micro)} = spent {_credits(report.spent_micro)}"
                f" + returned {_credits(report.returned_micro)} + still held {_credits(report.held_micro)}",
                file=sys.stderr,
            )
        return 0

    return run(args, work)


def cmd_earnings(args: argparse.Namespace, run: Callable[..., int]) -> int:
    """`node earnings`: what the account's nodes were paid, from the ledger."""
    since = parse_since(args.since) if args.since else 0.0

    async def work(client: Any) -> int:
        report = await client.earnings(since=since, by=args.by)
        _print_lines(args.by, report.lines, as_csv=args.csv)
        return 0

    return run(args, work)


def _cells(line: Any) -> tuple[str, str, str, str, str]:
    """A bill's line as text: its key, calls, CPU seconds, GB-seconds and credits."""
    cpu_s, gb_s = line.cpu_ms / 1000, line.mb_ms / 1024 / 1000
    return line.key, str(line.calls), f"{cpu_s:.3f}", f"{gb_s:.6f}", _credits(line.charged_micro)


def _print_lines(by: str, lines: Any, *, as_csv: bool) -> None:
    cells = [_cells(line) for line in lines]
    if as_csv:
        out = csv.writer(sys.stdout)
        out.writerow([by, "calls", "cpu_s", "gb_s", "credits"])
        out.writerows(cells)
        return
    calls, charged = sum(line.calls for line in lines), sum(line.charged_micro for line in lines)
    total = ("total", str(calls), "", "", _credits(charged))
    print_table((by, "calls", "CPU s", "GB s", "credits"), [*cells, total], align="lrrrr")


def add_usage_command(sub: Any, command: Callable[..., Any], run: Callable[..., int]) -> None:
    """`account usage` among the `account` commands (`run` is the account CLI's `_run`)."""
    usage = command(sub, "usage", lambda args: cmd_usage(args, run), "what your calls cost, from the ledger")
    usage.add_argument("--since", default="", help="from this UTC date (YYYY-MM-DD) or ISO time on")
    usage.add_argument("--by", choices=("function", "day"), default="function", help="one line per")
    usage.add_argument("--csv", action="store_true", help="comma-separated values, for a spreadsheet")


def add_earnings_command(node_commands: Any, run: Callable[..., int], *, default_anchor: str) -> None:
    """`node earnings` among the `node` commands (`run` is the account CLI's: it sends the token)."""
    earnings = node_commands.add_parser("earnings", help="what your nodes were paid, from the ledger")
    earnings.set_defaults(handler=lambda args: cmd_earnings(args, run))
    earnings.add_argument("--anchor", default=default_anchor, help="anchor URL (default: %(default)s)")
    earnings.add_argument("--since", default="", help="from this UTC date (YYYY-MM-DD) or ISO time on")
    earnings.add_argument("--by", choices=("node", "day"), default="node", help="one line per")
    earnings.add_argument("--csv", action="store_true", help="comma-separated values, for a spreadsheet")
