"""`p2pfaas anchor serve`: run an anchor (registry, node list, accounts, ledger), with its options:
the database, who may sign up, the public URL and TLS, earnings' maturity, channels' quiet time and
who may scrape /metrics."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pfaas.cli.common import add_log_format, command, run
from p2pfaas.dht import DEFAULT_ANCHOR_DHT_PORT
from p2pfaas.environment import home
from p2pfaas.errors import LocalError

if TYPE_CHECKING:  # the anchor's modules load only when it is served
    from p2pfaas.anchor.app import AnchorSettings


def cmd_anchor_serve(args: argparse.Namespace) -> int:
    from p2pfaas.anchor.server import serve_anchor

    db = args.db or f"sqlite+aiosqlite:///{home() / 'anchor.db'}"
    if db.startswith("sqlite"):
        Path(db.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    serving = serve_anchor(
        db, host=args.host, port=args.port, dht_port=args.dht_port, settings=anchor_settings(args)
    )
    run(serving, daemon=True)
    return 0


def add_anchor_options(serve: Any) -> None:
    """The accounts options of `p2pfaas anchor serve`."""
    serve.add_argument(
        "--require-accounts",
        action="store_true",
        help="lessee keys must be bound to an account to register or deploy (production)",
    )
    serve.add_argument("--no-signup", action="store_true", help="only operators create accounts")
    serve.add_argument(
        "--public-url",
        default="",
        help="the URL clients reach this anchor by, which key claims must name (default: http://HOST:PORT)",
    )
    serve.add_argument(
        "--tls-cert", default="", help="serve HTTPS with this certificate (PEM, with its chain)"
    )
    serve.add_argument("--tls-key", default="", help="the private key of --tls-cert (PEM)")
    serve.add_argument(
        "--earnings-mature-hours",
        type=float,
        default=72.0,
        help="volunteers' earnings can be paid out once this old, so that a proven lie can still be "
        "clawed back from them (default: %(default)s)",
    )
    serve.add_argument(
        "--channel-quiet",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a payment channel with no new ticket or paid receipt for this long is paid the rest "
        "its lessee signed, receipts or not (default: %(default)s)",
    )
    serve.add_argument(
        "--reachability-recheck",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="dial a listed node's URL back again once its last check is this old (default: %(default)s)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a reverse proxy (haproxy, nginx) whose X-Forwarded-For names the client (repeatable); "
        "the proxy must append the address it saw (haproxy: option forwardfor; nginx: "
        "$proxy_add_x_forwarded_for)",
    )
    serve.add_argument("--no-metrics", action="store_true", help="serve no GET /metrics")
    serve.add_argument(
        "--metrics-allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="let this range scrape GET /metrics too (repeatable; default: loopback only)",
    )


def anchor_settings(args: argparse.Namespace) -> AnchorSettings:
    from p2pfaas.anchor.app import AnchorSettings
    from p2pfaas.anchor.forwarded import parse_proxies
    from p2pfaas.metrics.http import parse_allow

    if not 0 <= args.earnings_mature_hours <= 24 * 365:
        raise LocalError("--earnings-mature-hours must be between 0 and a year")
    if not 1 <= args.channel_quiet <= 86400:
        raise LocalError("--channel-quiet must be between 1 second and a day")
    if not 1 <= args.reachability_recheck <= 86400:
        raise LocalError("--reachability-recheck must be between 1 second and a day")
    try:
        allow = parse_allow(args.metrics_allow)
    except ValueError as exc:
        raise LocalError(f"--metrics-allow: {exc}") from None
    try:
        proxies = parse_proxies(args.trusted_proxy)
    except ValueError as exc:
        raise LocalError(f"--trusted-proxy: {exc}") from None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise LocalError("--tls-cert and --tls-key go together")
    return AnchorSettings(
        require_accounts=args.require_accounts,
        allow_signup=not args.no_signup,
        public_url=args.public_url,
        earnings_mature_s=args.earnings_mature_hours * 3600.0,
        channel_quiet_s=args.channel_quiet,
        reachability_recheck_s=args.reachability_recheck,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        metrics=not args.no_metrics,
        metrics_allow=allow,
        trusted_proxies=proxies,
    )


def register(groups: Any) -> None:
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
    add_anchor_options(serve)  # --require-accounts, --no-signup
    add_log_format(serve)
