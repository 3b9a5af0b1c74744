"""The `p2pfaas` command line (names are stable: docs and scripts rely on them).

    p2pfaas keys new                      make an Ed25519 key pair (lessee or node)
    p2pfaas fn pack DIR                   pack and sign a function directory into a bundle file
    p2pfaas fn deploy DIR                 upload a function to the anchor
    p2pfaas fn invoke NAME [JSON]         run it and print the result
    p2pfaas anchor serve                  run an anchor (registry, node list)
    p2pfaas node run                      run a volunteer node
    p2pfaas node join --anchor URL        key, claim for your account, settings file, run: in one step
    p2pfaas node drain                    drain a running node: hand work over, then stop it
    p2pfaas runtime build                 build the Python runtime image locally
    p2pfaas devnet up|demo|down           a local network: anchor + N nodes, each its own process
    p2pfaas sim run SCENARIO              a research simulation (placement, placement-faults)
    p2pfaas lab up|exec|cut|heal|down     a network lab: hosts in namespaces, home NATs (root)
    p2pfaas top [--node URL] [--once]     a live view of nodes' load, latency and earnings

This module builds the parser (the groups `fn` and `node` in fn.py and node.py, the others in their
own modules) and runs the command; commands parse and print, and the work is done by the library
modules they call.
Errors from the library are printed as one line and exit with status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from p2pfaas import logfmt
from p2pfaas.cli import account as account_cli
from p2pfaas.cli import anchor as anchor_cli
from p2pfaas.cli import fn as fn_cli
from p2pfaas.cli import node as node_cli
from p2pfaas.cli.common import add_log_format, command
from p2pfaas.cli.top import add_top_command
from p2pfaas.client.logbook import terminal_safe
from p2pfaas.environment import default_anchor, default_key
from p2pfaas.errors import P2PFaaSError
from p2pfaas.lab import cli as lab_cli
from p2pfaas.placement import scenarios

# --- keys ---------------------------------------------------------------------------------------


def cmd_keys_new(args: argparse.Namespace) -> int:
    from p2pfaas.identity import KeyPair

    keys = KeyPair.generate()
    keys.save(args.out, overwrite=args.force)
    print(f"key id {keys.key_id}\nprivate key {args.out} (mode 600)\npublic key {args.out}.pub")
    return 0


def cmd_runtime_build(args: argparse.Namespace) -> int:
    from p2pfaas.exec.runtime_image import build_runtime_image

    tag = build_runtime_image(tag=args.tag, mirror=args.mirror, log=lambda line: print(line, flush=True))
    print(f"runtime image ready: {tag}")
    return 0


# --- devnet -------------------------------------------------------------------------------------


def cmd_devnet(args: argparse.Namespace) -> int:
    from p2pfaas import devnet

    directory = Path(args.dir)
    if args.devnet_command == "up":
        return devnet.up(
            directory, nodes=args.nodes, port=args.port, detach=args.detach, executor=args.executor
        )
    if args.devnet_command == "demo":
        return devnet.demo(directory)
    return devnet.down(directory)


# --- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2pfaas", description="A peer-to-peer FaaS volunteer cloud.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_log_format(parser, default="text")
    groups = parser.add_subparsers(dest="group", required=True)

    keys = groups.add_parser("keys", help="Ed25519 keys").add_subparsers(dest="keys_command", required=True)
    new = command(keys, "new", cmd_keys_new, "make a key pair, stored with owner-only permissions")
    new.add_argument(
        "--out", type=Path, default=default_key(), help="private key file (default: %(default)s)"
    )
    new.add_argument("--force", action="store_true", help="overwrite an existing key")

    fn_cli.register(groups)  # p2pfaas fn pack|deploy|invoke|list|versions|rollback|rm|logs

    anchor_cli.register(groups)  # p2pfaas anchor serve
    node_cli.register(groups)  # p2pfaas node run|join|drain|status|pause|resume|earnings
    runtime = groups.add_parser("runtime", help="the function runtime image").add_subparsers(
        dest="runtime_command", required=True
    )
    build = command(runtime, "build", cmd_runtime_build, "build the Python runtime image locally")
    build.add_argument("--tag", default="p2pfaas/runtime-python:0.1")
    build.add_argument(
        "--mirror", default="http://deb.debian.org/debian", help="Debian mirror for debootstrap"
    )

    dev = groups.add_parser("devnet", help="a local network").add_subparsers(
        dest="devnet_command", required=True
    )
    up = command(dev, "up", cmd_devnet, "start an anchor and N nodes, each its own process")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--port", type=int, default=8700, help="the anchor's port; nodes take the next ones")
    up.add_argument("--detach", action="store_true", help="return once the network is up")
    up.add_argument("--executor", choices=("auto", "process"), default="auto", help="process: skip Docker")
    for sub in (
        up,
        command(dev, "demo", cmd_devnet, "deploy and invoke a sample function"),
        command(dev, "down", cmd_devnet, "stop a detached devnet"),
    ):
        sub.add_argument(
            "--dir", default=".devnet", help="the devnet's state directory (default: %(default)s)"
        )
    account_cli.register(groups, default_anchor=default_anchor())  # accounts, tokens, payouts (issue #5)
    scenarios.register(groups)  # p2pfaas sim run SCENARIO (placement scenarios, issue #6)
    lab_cli.register(groups)  # p2pfaas lab up|exec|cut|heal|down (network namespaces, issue #12)
    add_top_command(groups, default_anchor=default_anchor)  # p2pfaas top (nodes' /metrics, issue #20)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logfmt.setup(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    if not args.verbose:  # Alembic narrates every migration step at INFO: only its problems matter here
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.handler(args))
    except P2PFaaSError as exc:
        print(f"p2pfaas: error: {terminal_safe(str(exc))}", file=sys.stderr)  # may quote a stranger
        return 1
    except KeyboardInterrupt:
        return 130
