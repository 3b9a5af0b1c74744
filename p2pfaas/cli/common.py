"""What the command groups share: running a coroutine (uvloop for daemons), adding a command to a
group, the lessee's `--key` and `--anchor`, DHT peers given as HOST:PORT, and `--log-format`."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from p2pfaas import logfmt
from p2pfaas.dht import parse_peer
from p2pfaas.environment import default_anchor, default_key
from p2pfaas.errors import LocalError


def run(coro: Coroutine[Any, Any, Any], *, daemon: bool = False) -> Any:
    """Run a coroutine; daemons get uvloop where it is installed (production speed)."""
    if daemon:
        try:
            import uvloop

            return uvloop.run(coro)
        except ImportError:
            pass
    return asyncio.run(coro)


def command(group: Any, name: str, handler: Callable[[argparse.Namespace], int], help: str) -> Any:
    """A command `name` in subparser group `group`, run by `handler`."""
    sub = group.add_parser(name, help=help, description=help)
    sub.set_defaults(handler=handler)
    return sub


def as_lessee(sub: Any) -> None:
    """`--key` (the key that signs) and `--anchor` (the anchor it talks to)."""
    sub.add_argument("--key", type=Path, default=default_key(), help="lessee key (default: %(default)s)")
    sub.add_argument("--anchor", default=default_anchor(), help="anchor URL (default: %(default)s)")


def peer_arg(text: str) -> tuple[str, int]:
    try:
        return parse_peer(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def dht_seeds(args: argparse.Namespace) -> tuple[tuple[str, int], ...]:
    """`--dht-seed` options, else P2PFAAS_DHT_SEEDS (comma-separated HOST:PORT), else none."""
    if args.dht_seed:
        return tuple(args.dht_seed)
    parts = [part.strip() for part in os.environ.get("P2PFAAS_DHT_SEEDS", "").split(",") if part.strip()]
    try:
        return tuple(parse_peer(part) for part in parts)
    except ValueError as exc:
        raise LocalError(f"P2PFAAS_DHT_SEEDS: {exc}") from None


def add_log_format(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """`--log-format text|json`, on the top parser and again on the daemons' own commands (where
    users look for it); the command's, when given, wins."""
    parser.add_argument(
        "--log-format",
        choices=logfmt.FORMS,
        default=argparse.SUPPRESS if default is None else default,
        help="text, or json: one object a line with the invocation, function and node ids",
    )
