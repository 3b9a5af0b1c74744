"""`p2pfaas fn ...`: pack, deploy, invoke, list, versions, rollback and rm a lessee's functions (and
`fn logs`, in fn_logs.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pfaas import codec
from p2pfaas.cli import pay as pay_cli
from p2pfaas.cli.common import as_lessee, command, dht_seeds, peer_arg, run
from p2pfaas.cli.fn_logs import add_logs_command
from p2pfaas.client.logbook import terminal_safe
from p2pfaas.environment import lessee_keys, logs_dir
from p2pfaas.errors import LocalError

if TYPE_CHECKING:  # for the annotations only: the commands import the client when they run
    from p2pfaas.client import AsyncClient


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

    async def with_client() -> None:
        async with AsyncClient(args.anchor, _lessee_keys(args)) as client:
            await work(client)

    run(with_client())
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

    run(invoke())
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


def register(groups: Any) -> None:
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
