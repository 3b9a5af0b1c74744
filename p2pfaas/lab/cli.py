"""`p2pfaas lab up|ls|exec|cut|heal|down`: the network lab from the command line (needs root).

    p2pfaas lab up --public 3 --homes 2 --per-home 2    build a lab and print its hosts
    p2pfaas lab exec home1-1 -- p2pfaas node run ...     run a command on one of its hosts
    p2pfaas lab cut router1 / lab heal router1           partition a host (a router: its home) and heal
    p2pfaas lab down                                     remove it (every namespace it made)

With one lab built, `--token` may be left out. This module parses and prints; `topology.py` works.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from p2pfaas.lab.topology import Lab, LabError, LabSpec, remove_stale


def _the_lab(args: argparse.Namespace) -> Lab:
    if args.token:
        return Lab.load(args.token)
    labs = Lab.recorded()
    if len(labs) != 1:
        found = ", ".join(lab.token for lab in labs) or "none"
        raise LabError(f"say which lab with --token (labs: {found})")
    return labs[0]


def _print_hosts(lab: Lab) -> None:
    print(f"lab {lab.token}:")
    for host in lab.hosts.values():
        nat = f"behind {host.router}, seen as {host.public_address}" if host.router else "public"
        print(f"  {host.name:<12} {host.address:<16} {nat:<36} ip netns exec {host.ns} ...")


def _up(args: argparse.Namespace) -> int:
    remove_stale()
    lab = Lab.build(LabSpec(public=args.public, homes=args.homes, per_home=args.per_home))
    _print_hosts(lab)
    print(f"remove it with: p2pfaas lab down --token {lab.token}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    for lab in Lab.recorded():
        _print_hosts(lab)
    return 0


def _exec(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabError("say what to run: p2pfaas lab exec HOST -- COMMAND ...")
    argv = _the_lab(args).host(args.host).argv(*command)
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # replaces this process: the command's exit status is ours


def _cut(args: argparse.Namespace) -> int:
    _the_lab(args).cut(args.host)
    print(f"{args.host} is cut off")
    return 0


def _heal(args: argparse.Namespace) -> int:
    _the_lab(args).heal(args.host)
    print(f"{args.host} is connected again")
    return 0


def _down(args: argparse.Namespace) -> int:
    labs = Lab.recorded() if args.all else [_the_lab(args)]
    for lab in labs:
        lab.destroy()
        print(f"lab {lab.token} removed")
    return 0


def register(groups: Any) -> None:
    """Add `p2pfaas lab ...` to the top-level command groups."""
    lab = groups.add_parser("lab", help="the network lab (namespaces, NAT; needs root)").add_subparsers(
        dest="lab_command", required=True
    )

    def command(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = lab.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        if name not in ("up", "ls"):
            sub.add_argument("--token", help="which lab (default: the only one)")
        return sub

    up = command("up", _up, "build a lab: public hosts, home routers doing NAT, hosts behind them")
    up.add_argument("--public", type=int, default=3, help="hosts with a public address (default: 3)")
    up.add_argument("--homes", type=int, default=2, help="home routers (default: 2)")
    up.add_argument("--per-home", type=int, default=2, help="hosts behind each router (default: 2)")
    command("ls", _ls, "list the labs built and their hosts")
    run = command("exec", _exec, "run a command on a host of the lab")
    run.add_argument("host")
    run.add_argument("command", nargs=argparse.REMAINDER)
    command("cut", _cut, "drop everything on a host's uplink (a router: its whole home)").add_argument("host")
    command("heal", _heal, "undo `lab cut`").add_argument("host")
    down = command("down", _down, "remove a lab: every namespace it made")
    down.add_argument("--all", action="store_true", help="every lab recorded")
