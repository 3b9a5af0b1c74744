"""How others reach this node, and so the URL it announces.

- `--public-url` given: that, as the operator says (port forwarding, a proxy, a DNS name): FIXED.
- Bound to loopback: `http://HOST:PORT`, a devnet on one machine: FIXED.
- Otherwise the node asks the anchor which address it sees (`GET /v1/whoami`, STUN's question over
  HTTP) and announces that address with its port. The anchor dials it back before listing it (it dials
  only the address the announcement came from); once that works the node is DIRECT, and offers to
  relay for others. If it fails the node is behind NAT or a firewall: it dials out to a relay
  (`p2pfaas.relay.RelayLink`), announces the relayed URL and takes part in the DHT as a client: RELAYED.

This module holds the decisions and the small lookups behind them; `daemon.py` acts on them.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import aiohttp.web

from p2pfaas import rpc, tls
from p2pfaas.dht.adverts import plain_url
from p2pfaas.errors import P2PFaaSError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Observed

WHOAMI_TIMEOUT_S = 5.0
TLS_DIR = "tls"


class Reach(enum.Enum):
    FIXED = "fixed"  # the configured URL (or loopback), never tested or changed
    UNTESTED = "untested"  # a guess: announced, not yet dialled back
    DIRECT = "direct"  # the anchor reached us at our own address
    RELAYED = "relayed"  # reached through a relay


log = logging.getLogger(__name__)


def base_url(host: str, port: int, *, tls_id: str | None) -> str:
    """The node's base URL: with TLS, https and the identity it proves (`p2pfaas.tls`); else http."""
    plain = plain_url(host, port)
    return plain if tls_id is None else "https" + plain[4:] + tls.identity_path(tls_id)


def tls_enabled(mode: str, host: str) -> bool:
    """`--tls on|off|auto`: auto serves TLS everywhere but on loopback (a devnet on one machine)."""
    return mode == "on" or (mode == "auto" and not is_loopback(host))


def server_context(keys: KeyPair, work_dir: Path) -> ssl.SSLContext:
    """The node's TLS context, on a certificate of its own identity key (kept in WORK_DIR/tls)."""
    return tls.server_context(*tls.write_node_certificate(keys, work_dir / TLS_DIR))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def fixed_url(public_url: str, host: str, port: int, *, tls_id: str | None) -> str | None:
    """The URL to announce without asking anyone, or None when it must be learned."""
    if public_url:
        return public_url.rstrip("/")
    if is_loopback(host):
        return base_url(host, port, tls_id=tls_id)
    return None


async def observed_address(session: aiohttp.ClientSession, anchor_url: str) -> str:
    """The address the anchor sees this machine at (raises `Unreachable`/`Refused` like any call)."""
    seen = await rpc.call(session, "GET", f"{anchor_url}/v1/whoami", Observed, timeout_s=WHOAMI_TIMEOUT_S)
    return str(ipaddress.ip_address(seen.address))  # a well-formed address, or ValueError


def local_address_towards(url: str) -> str:
    """The address of the interface this machine would use to reach `url`'s host (no packet is sent:
    a connected UDP socket only picks a route). The fallback guess when the anchor cannot be asked."""
    host = urlsplit(url).hostname or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


async def guess_url(
    session: aiohttp.ClientSession, anchor_url: str, host: str, port: int, *, tls_id: str | None
) -> str:
    """Our address as the anchor sees it; without an answer, the bound host, or (bound to every
    interface) the interface towards the anchor."""
    try:
        return base_url(await observed_address(session, anchor_url), port, tls_id=tls_id)
    except (P2PFaaSError, ValueError) as exc:
        log.warning("could not ask the anchor which address it sees us at: %s", exc)
    if not is_wildcard(host):
        return base_url(host, port, tls_id=tls_id)
    return base_url(local_address_towards(anchor_url), port, tls_id=tls_id)


def bound_port(runner: aiohttp.web.AppRunner, asked: int) -> int:
    """The TCP port `runner` listens on (the one the OS chose when `asked` was 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked
