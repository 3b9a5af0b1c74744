"""The client's address behind a reverse proxy: `X-Forwarded-For`, believed only from trusted proxies.

An anchor behind haproxy (several anchors, issue #18) or nginx sees every request come from the proxy,
so `GET /v1/whoami` would echo the proxy's address, the reachability dial-back would go to the proxy,
and the per-address rate limits would throttle everybody as one. With `anchor serve --trusted-proxy
CIDR`, a request whose peer is in those ranges has its `request.remote` replaced by the rightmost
address of its `X-Forwarded-For` that is not itself a trusted proxy (what nginx's `real_ip_recursive`
does). From any other peer the header is ignored: a client cannot choose the address it is seen at.

aiohttp-remotes was weighed: its XForwardedFiltered believes the header from any peer, and its
XForwardedStrict refuses requests that do not come through exactly the configured chain (a loopback
scrape, a direct health check).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 16  # addresses of X-Forwarded-For looked at


def parse_proxies(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """The trusted proxies' ranges (ValueError names a bad one)."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def client_address(peer: str, forwarded_for: Sequence[str], proxies: Sequence[Network]) -> str:
    """Who the request is from: `peer`, or, when `peer` is a trusted proxy, the rightmost address of
    `forwarded_for` (each header's comma-separated list, in order) that is not a trusted proxy."""
    if not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")][-MAX_HOPS:]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return str(ipaddress.ip_address(hop)) if _is_address(hop) else peer
    return peer  # the proxy's own request (a health check), or only proxies on the way


def forwarded_middleware(proxies: Sequence[Network]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote or ""
        seen = client_address(peer, request.headers.getall(hdrs.X_FORWARDED_FOR, []), proxies)
        return await handler(request if seen == peer else request.clone(remote=seen))

    return middleware


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)
