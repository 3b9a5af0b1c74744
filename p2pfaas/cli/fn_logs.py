"""`p2pfaas fn logs NAME [--invocation ID] [--follow]`: what a function's calls printed.

Nodes sign each call's output into its result (64 KiB at most, `exec/runtime/shim.py`); the
lessee's client keeps it on the lessee's own machine (`p2pfaas.client.logbook`, under
`$P2PFAAS_HOME/logs`) for every call made through the CLI or `Client.from_environment()` /
`Executor()`. This command reads that record; nothing goes over the network.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from p2pfaas.environment import logs_dir

__all__ = ["add_logs_command", "cmd_fn_logs"]


def cmd_fn_logs(args: argparse.Namespace) -> int:
    from p2pfaas.client.logbook import LogBook

    book = LogBook(logs_dir())
    entries = book.entries(args.name, invocation_id=args.invocation)
    if args.tail:
        entries = entries[-args.tail :]
    for entry in entries:
        print(entry.render(), end="")
    if not entries and not args.follow:
        what = f"call {args.invocation} of {args.name}" if args.invocation else f"calls of {args.name}"
        print(f"no output kept for {what} (in {book.path(args.name)})", file=sys.stderr)
        return 1 if args.invocation else 0
    if args.follow:
        try:
            for entry in book.follow(args.name):
                if args.invocation in (None, entry.invocation_id):
                    print(entry.render(), end="", flush=True)
        except KeyboardInterrupt:
            pass
    return 0


def add_logs_command(fn: Any, command: Callable[..., Any]) -> None:
    """`fn logs` among the `fn` commands."""
    logs = command(fn, "logs", cmd_fn_logs, "print what a function's calls printed (kept by this client)")
    logs.add_argument("name")
    logs.add_argument("--invocation", default=None, metavar="ID", help="only this call")
    logs.add_argument("--tail", type=int, default=0, metavar="N", help="only the last N calls")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new calls' output")
