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

This module parses arguments and prints; the work is done by the library modules it calls.
Errors from the library are printed as one line and exit with status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from p2pfaas import codec, logfmt
from p2pfaas.cli import account as account_cli
from p2pfaas.cli import pay as pay_cli
from p2pfaas.cli.fn_logs import add_logs_command
from p2pfaas.cli.node_status import add_status_command
from p2pfaas.cli.top import add_top_command
from p2pfaas.cli.usage import add_earnings_command
from p2pfaas.client.logbook import terminal_safe
from p2pfaas.dht import DEFAULT_ANCHOR_DHT_PORT, parse_peer
from p2pfaas.environment import default_anchor, default_key, home, lessee_keys, load_token, logs_dir
from p2pfaas.errors import LocalError, P2PFaaSError
from p2pfaas.lab import cli as lab_cli
from p2pfaas.node import drain as drain_cli
from p2pfaas.placement import scenarios

if TYPE_CHECKING:  # for the annotations only: the commands import the client when they run
    from p2pfaas.client import AsyncClient


def _run(coro: Coroutine[Any, Any, Any], *, daemon: bool = False) -> Any:
    """Run a coroutine; daemons get uvloop where it is installed (production speed)."""
    if daemon:
        try:
            import uvloop

            return uvloop.run(coro)
        except ImportError:
            pass
    return asyncio.run(coro)


# --- keys ---------------------------------------------------------------------------------------


def cmd_keys_new(args: argparse.Namespace) -> int:
    from p2pfaas.identity import KeyPair

    keys = KeyPair.generate()
    keys.save(args.out, overwrite=args.force)
    print(f"key id {keys.key_id}\nprivate key {args.out} (mode 600)\npublic key {args.out}.pub")
    return 0


# --- functions ----------------------------------------------------------------------------------


def _lessee_keys(args: argparse.Namespace) -> Any:
    return lessee_keys(Path(args.key), otherwise="pass --key")


def cmd_fn_pack(args: argparse.Namespace) -> int:
    from p2pfaas.bundle import make_bundle
    from p2pfaas.bundle.resolve import lock_directory

    lock = lock_directory(Path(args.directory))  # the requirements, resolved into p2pfaas.lock
    bundle = make_bundle(Path(args.directory), _lessee_keys(args))
    m = bundle.header.manifest
    out = Path(args.out or f"{m.name}-{m.version}.p2pfaas")
    out.write_bytes(codec.encode(bundle))
    print(f"{out}: {m.name} {m.version}, {bundle.header.size_bytes} bytes, sha256 {bundle.header.digest}")
    if lock is not None:
        print(f"  dependency layer {lock.layer_digest[:12]}: {len(lock.wheels)} wheels, {lock.size} bytes")
    return 0


def _with_client(args: argparse.Namespace, work: Callable[[AsyncClient], Awaitable[None]]) -> int:
    """Run `work` with a client of the lessee's key (`--key`) and anchor (`--anchor`)."""
    from p2pfaas.client import AsyncClient

    async def run() -> None:
        async with AsyncClient(args.anchor, _lessee_keys(args)) as client:
            await work(client)

    _run(run())
    return 0


def cmd_fn_deploy(args: argparse.Namespace) -> int:
    async def deploy(client: AsyncClient) -> None:
        info = await client.deploy(Path(args.directory))
        m = info.header.manifest
        print(f"deployed {m.name} {m.version} (sha256 {info.header.digest}) to {args.anchor}")

    return _with_client(args, deploy)


def cmd_fn_invoke(args: argparse.Namespace) -> int:
    from p2pfaas.client import AsyncClient
    from p2pfaas.client.logbook import LogBook
    from p2pfaas.client.replication import verified_invoke
    from p2pfaas.errors import FunctionFailed, InvokeError

    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise LocalError(f"payload is not JSON: {exc}") from None

    async def invoke() -> None:
        logbook = LogBook(logs_dir())  # for `fn logs`
        client = AsyncClient(args.anchor, _lessee_keys(args), dht_seeds=dht_seeds(args), logbook=logbook)
        async with client, pay_cli.paying(args, client):
            try:
                if args.verify == "off":
                    outcome = await client.invoke(args.name, payload, timeout_s=args.timeout)
                else:  # replicas on distinct nodes, result hashes voted (issue #5, trust)
                    outcome = await verified_invoke(
                        client, args.name, payload, timeout_s=args.timeout, mode=args.verify
                    )
            except InvokeError as failed:  # what it printed, its own traceback, then the one-line error
                if args.logs and failed.logs:
                    print(terminal_safe(failed.logs.rstrip()), file=sys.stderr)
                if isinstance(failed, FunctionFailed) and failed.traceback:
                    print(terminal_safe(failed.traceback.rstrip()), file=sys.stderr)
                raise
            if args.logs and outcome.logs:
                print(terminal_safe(outcome.logs.rstrip()), file=sys.stderr)
            print(json.dumps(outcome.value, indent=2))
            price = f", {outcome.price_micro} micro-credits" if outcome.price_micro else ""
            print(
                f"# node {outcome.node_id[:12]} ({outcome.node_url}), {outcome.duration_s * 1000:.1f} ms"
                f"{', cold start' if outcome.cold else ''}{price}",
                file=sys.stderr,
            )

    _run(invoke())
    return 0


def cmd_fn_list(args: argparse.Namespace) -> int:
    """The key's functions at their current versions; with NAME, every version of that function."""

    async def listing(client: AsyncClient) -> None:
        name = getattr(args, "name", None)
        rows = await (client.versions(name) if name else client.functions())
        if not rows:
            print("no functions deployed with this key", file=sys.stderr)
        for row in rows:
            mark = "*" if row.current and name else " "
            print(f"{mark} {row.name:24} {row.version:12} {row.digest[:16]}  {row.runtime}")

    return _with_client(args, listing)


def cmd_fn_change(args: argparse.Namespace) -> int:
    """`fn rollback NAME VERSION` and `fn rm NAME`: signed by the function's owner key."""

    async def change(client: AsyncClient) -> None:
        version = getattr(args, "version", None)
        print(await (client.rollback(args.name, version) if version else client.remove(args.name)))

    return _with_client(args, change)


# --- daemons ------------------------------------------------------------------------------------


def cmd_anchor_serve(args: argparse.Namespace) -> int:
    from p2pfaas.anchor.server import serve_anchor

    db = args.db or f"sqlite+aiosqlite:///{home() / 'anchor.db'}"
    if db.startswith("sqlite"):
        Path(db.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    serving = serve_anchor(
        db, host=args.host, port=args.port, dht_port=args.dht_port, settings=account_cli.anchor_settings(args)
    )
    _run(serving, daemon=True)
    return 0


def _parse_memory(text: str) -> int:
    """'4g', '512m' or a number of MiB -> MiB."""
    units = {"g": 1024, "m": 1}
    try:
        if text[-1:].lower() in units:
            return int(float(text[:-1]) * units[text[-1].lower()])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"memory must look like 4g, 512m or 2048, not {text!r}") from None


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
    _run(run_node(config), daemon=True)
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


def add_log_format(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """`--log-format text|json`, on the top parser and again on the daemons' own commands (where
    users look for it); the command's, when given, wins."""
    parser.add_argument(
        "--log-format",
        choices=logfmt.FORMS,
        default=argparse.SUPPRESS if default is None else default,
        help="text, or json: one object a line with the invocation, function and node ids",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="p2pfaas", description="A peer-to-peer FaaS volunteer cloud.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_log_format(parser, default="text")
    groups = parser.add_subparsers(dest="group", required=True)

    def command(group: Any, name: str, handler: Callable[[argparse.Namespace], int], help: str) -> Any:
        sub = group.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    def as_lessee(sub: Any) -> None:  # the key that signs, and the anchor it talks to
        sub.add_argument("--key", type=Path, default=default_key(), help="lessee key (default: %(default)s)")
        sub.add_argument("--anchor", default=default_anchor(), help="anchor URL (default: %(default)s)")

    keys = groups.add_parser("keys", help="Ed25519 keys").add_subparsers(dest="keys_command", required=True)
    new = command(keys, "new", cmd_keys_new, "make a key pair, stored with owner-only permissions")
    new.add_argument(
        "--out", type=Path, default=default_key(), help="private key file (default: %(default)s)"
    )
    new.add_argument("--force", action="store_true", help="overwrite an existing key")

    fn = groups.add_parser("fn", help="functions").add_subparsers(dest="fn_command", required=True)
    for name, handler, text in (
        ("pack", cmd_fn_pack, "pack and sign DIR into a bundle file"),
        ("deploy", cmd_fn_deploy, "pack, sign and upload DIR to the anchor"),
    ):
        sub = command(fn, name, handler, text)
        sub.add_argument("directory", help="a function directory with a p2pfaas.toml manifest")
        as_lessee(sub)
        if name == "pack":
            sub.add_argument("--out", help="bundle file (default: NAME-VERSION.p2pfaas)")
    for name, text in (
        ("list", "list the functions deployed with your key, at their current versions"),
        ("versions", "list every version of function NAME (* marks the current one)"),
    ):
        sub = command(fn, name, cmd_fn_list, text)
        if name == "versions":
            sub.add_argument("name")
        as_lessee(sub)
    for name, text in (
        ("rollback", "point function NAME at its deployed VERSION again"),
        ("rm", "remove function NAME: invoking it is 'not found' from then on"),
    ):
        sub = command(fn, name, cmd_fn_change, text)
        sub.add_argument("name")
        if name == "rollback":
            sub.add_argument("version")
        as_lessee(sub)
    invoke = command(fn, "invoke", cmd_fn_invoke, "run a deployed function and print its result")
    invoke.add_argument("name")
    invoke.add_argument("payload", nargs="?", default="null", help="JSON payload (default: null)")
    invoke.add_argument("--timeout", type=float, default=None, help="seconds (default: the manifest's)")
    invoke.add_argument("--logs", action="store_true", help="print what the call printed (to stderr)")
    pay_cli.add_pay_option(invoke)  # --pay CREDITS: vouchers from the logged-in account (issue #5)
    invoke.add_argument(
        "--verify",
        choices=("off", "adaptive", "always"),
        default="off",
        help="deterministic functions: check the result on other nodes (adaptive: spot-check trusted nodes)",
    )
    invoke.add_argument(
        "--dht-seed",
        type=peer_arg,
        action="append",
        metavar="HOST:PORT",
        help="find entry nodes through the DHT via this peer (repeatable; env P2PFAAS_DHT_SEEDS, comma-"
        "separated); without one, the anchor's node list",
    )
    as_lessee(invoke)
    add_logs_command(fn, command)

    anchor = groups.add_parser("anchor", help="the anchor server").add_subparsers(
        dest="anchor_command", required=True
    )
    serve = command(anchor, "serve", cmd_anchor_serve, "serve the anchor's registry and node list")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8700)
    serve.add_argument("--db", help="SQLAlchemy URL, e.g. mysql+aiomysql://user:pw@host/db (default: SQLite)")
    serve.add_argument(
        "--dht-port", type=int, default=DEFAULT_ANCHOR_DHT_PORT, help="bootstrap DHT node (udp)"
    )
    account_cli.add_anchor_options(serve)  # --require-accounts, --no-signup
    add_log_format(serve)

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
    run.add_argument("--memory", type=_parse_memory, help="memory lent, e.g. 4g (default 2g)")
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
