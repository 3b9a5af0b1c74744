"""`p2pfaas node ...`: run a volunteer node, join a network in one step, and (in their own modules)
drain, status, pause, resume and earnings."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from p2pfaas.cli import account as account_cli
from p2pfaas.cli.common import add_log_format, peer_arg, run
from p2pfaas.cli.node_status import add_status_command
from p2pfaas.cli.usage import add_earnings_command
from p2pfaas.dht import DEFAULT_ANCHOR_DHT_PORT
from p2pfaas.environment import default_anchor, home, load_token
from p2pfaas.node import drain as drain_cli


def parse_memory(text: str) -> int:
    """'4g', '512m' or a number of MiB -> MiB."""
    units = {"g": 1024, "m": 1}
    try:
        if text[-1:].lower() in units:
            return int(float(text[:-1]) * units[text[-1].lower()])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"memory must look like 4g, 512m or 2048, not {text!r}") from None


def default_peers(anchor_url: str) -> tuple[tuple[str, int], ...]:
    """The anchor's bootstrap DHT node, on the anchor's host at the default DHT port."""
    host = urlsplit(anchor_url).hostname
    return ((host, DEFAULT_ANCHOR_DHT_PORT),) if host else ()


def cmd_node_run(args: argparse.Namespace) -> int:
    from p2pfaas.node.daemon import run_node
    from p2pfaas.node.settings import NodeConfig, node_resources, unpaid_keys

    work_dir = Path(args.work_dir or home() / "node")
    config = NodeConfig(
        anchor_url=args.anchor,
        key_path=Path(args.key or work_dir / "node.key"),
        work_dir=work_dir,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        relays=tuple(args.relay),
        direct_retest_s=args.direct_retest,
        egress=args.egress,
        egress_allow=tuple(args.egress_allow),
        tls=args.tls,
        executor=args.executor,
        allow_unsandboxed=args.allow_unsandboxed,
        runtime_image=args.image,
        dht_port=args.dht_port,
        peers=tuple(args.peer) or default_peers(args.anchor),
        **drain_cli.placement_options(args),
        **node_resources(
            args.config,
            cpus=args.cpus,
            memory_mb=args.memory,
            slots=args.slots,
            queue_size=args.queue_size,
            workers=args.workers,
            unpaid_owners=args.unpaid_owners,
            unpaid_keys=unpaid_keys(args.unpaid_key, where="--unpaid-key") if args.unpaid_key else None,
            callback_allow=tuple(args.callback_allow) or None,
            metrics=False if args.no_metrics else None,
            metrics_allow=tuple(args.metrics_allow) or None,
            lend_hours=tuple(args.lend_hours) or None,
            pause_load=args.pause_load,
        ),
    )
    run(run_node(config), daemon=True)
    return 0


def cmd_node_join(args: argparse.Namespace) -> int:
    """`node run`, after what a new volunteer must do once: the node's key, its claim for the
    logged-in account (so the anchor pays it there), and a settings file to run it from next time."""
    import socket

    from p2pfaas.client.account import AccountClient
    from p2pfaas.identity import KeyPair
    from p2pfaas.node.settings import node_resources, write_config_file

    token = load_token()  # the volunteer's (`p2pfaas account login NAME`): before anything is made
    work_dir = Path(args.work_dir or home() / "node")
    keys = KeyPair.load_or_create(Path(args.key or work_dir / "node.key"))

    async def claim() -> bool:
        async with AccountClient(args.anchor, token=token) as account:
            if keys.key_id in {k.key_id for k in (await account.me()).keys}:
                return False
            await account.claim_key(keys, kind="node", label=args.label or socket.gethostname()[:100])
            return True

    claimed = asyncio.run(claim())
    config_path = Path(args.config) if args.config else work_dir / "node.toml"
    if not config_path.exists():
        given = {
            "cpus": args.cpus, "memory_mb": args.memory, "slots": args.slots, "queue_size": args.queue_size,
            "workers": args.workers, "unpaid_owners": args.unpaid_owners or None,
            "lend_hours": tuple(args.lend_hours) or None, "pause_load": args.pause_load,
        }  # fmt: skip
        write_config_file(config_path, node_resources(None, **given))
    args.config = str(config_path)
    what = "claimed for your account" if claimed else "already bound to your account"
    print(f"node {keys.key_id} {what}; settings in {config_path}", flush=True)
    print(f"next time: p2pfaas node run --work-dir {work_dir} --config {config_path}", flush=True)
    return cmd_node_run(args)


def register(groups: Any) -> None:
    node = groups.add_parser("node", help="a volunteer node").add_subparsers(
        dest="node_command", required=True
    )
    run = argparse.ArgumentParser(add_help=False)  # the options of `node run`, and of `node join`
    run.add_argument("--anchor", default=default_anchor(), help="anchor URL (default: %(default)s)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=0, help="0: any free port")
    run.add_argument(
        "--public-url",
        default="",
        help="the URL to announce, as is (port forwarding, a proxy); default: the address the anchor "
        "sees, dialled back by it, else a relay's",
    )
    run.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="URL",
        help="a relay to try first when behind NAT (repeatable; then public nodes, then the anchor)",
    )
    run.add_argument(
        "--egress",
        action="store_true",
        help="lend network to functions that declare egress hosts, through this node's proxy "
        "(Docker executor; never to private, loopback or link-local addresses)",
    )
    run.add_argument(
        "--egress-allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="with --egress, a range functions may reach beyond the public internet (a lab's hosts)",
    )
    run.add_argument(
        "--direct-retest",
        type=float,
        default=300.0,
        metavar="S",
        help="while relayed, ask every S seconds whether the node is reachable directly (default: 300)",
    )
    run.add_argument(
        "--tls",
        choices=("auto", "on", "off"),
        default="auto",
        help="HTTPS on a certificate of the node's own key, pinned by callers (auto: on, except on loopback)",
    )
    run.add_argument("--work-dir", help="bundles, sockets and the node key (default: ~/.p2pfaas/node)")
    run.add_argument("--key", help="node key file (default: WORK_DIR/node.key)")
    run.add_argument("--executor", choices=("auto", "docker", "process"), default="auto")
    run.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="if Docker is missing, run functions as plain processes (trusted local use ONLY)",
    )
    run.add_argument("--cpus", type=float, help="CPU cores lent, shared by all instances (default 1)")
    run.add_argument("--memory", type=parse_memory, help="memory lent, e.g. 4g (default 2g)")
    run.add_argument("--slots", type=int, help="invocations run at once (default 4)")
    run.add_argument("--queue-size", type=int, help="invocations that may wait for a slot (default 64)")
    run.add_argument(
        "--workers",
        type=int,
        help="processes serving invocations on the port, each with its share of the slots and memory "
        "(default 1; up to one per core for warm throughput)",
    )
    run.add_argument(
        "--unpaid-key",
        action="append",
        default=None,
        metavar="KEY_ID",
        help="a lessee key id that may run functions here without paying (repeatable; default: "
        "nobody, every invocation needs a voucher)",
    )
    run.add_argument(
        "--unpaid-owners",
        action="store_true",
        default=None,
        help="let a function's owner run it here without paying (a devnet among friends)",
    )
    run.add_argument("--no-metrics", action="store_true", help="serve no GET /metrics, record no figures")
    run.add_argument(
        "--lend-hours", action="append", default=[], metavar="SPAN",
        help="lend only in these weekly hours, local time, e.g. 'mon-fri 18:00-08:00' (repeatable)",
    )  # fmt: skip
    run.add_argument(
        "--pause-load", type=float, metavar="LOAD",
        help="pause while the owner's own load per core stays above this for a minute (0: never)",
    )  # fmt: skip
    add_log_format(run)
    run.add_argument(
        "--metrics-allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="let this range scrape GET /metrics too (repeatable; default: loopback only)",
    )
    run.add_argument(
        "--callback-allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="let job callbacks reach this range too, e.g. 127.0.0.0/8 (repeatable; default: only "
        "public addresses: never this machine, its LAN or link-local/metadata addresses)",
    )
    run.add_argument("--config", help="TOML file with cpus, memory, slots, queue_size, prices")
    run.add_argument("--image", default="", help="runtime image tag (default: the built-in one)")
    run.add_argument("--dht-port", type=int, default=0, help="DHT port (udp; 0: any free port)")
    run.add_argument(
        "--peer",
        action="append",
        type=peer_arg,
        default=[],
        help="DHT peer HOST:PORT to join through (repeatable; default: the anchor's bootstrap node)",
    )
    drain_cli.add_placement_arguments(run)  # --placement, --gossip-period, ... (issue #6)
    options = run
    run = node.add_parser("run", parents=[options], help="lend this machine: serve invocations")
    run.set_defaults(handler=cmd_node_run)
    join = node.add_parser(
        "join",
        parents=[options],
        help="join a network in one step: make the node's key, claim it for your account (log in "
        "first), write its settings to WORK_DIR/node.toml, and run it",
    )
    join.add_argument("--label", default="", help="what your account lists the node as (default: host name)")
    join.set_defaults(handler=cmd_node_join)
    drain_cli.register(node, home=home())  # p2pfaas node drain (issue #6)
    add_status_command(node, home=home(), default_anchor=default_anchor())  # p2pfaas node status (#21)
    add_earnings_command(node, account_cli.run_logged_in, default_anchor=default_anchor())
