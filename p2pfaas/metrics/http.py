"""Request figures for aiohttp apps, and the `GET /metrics` handler.

`middleware(figures)` counts every request by route template and status and times it by route
template: `/v1/jobs/{id}`, never the path itself, so ids add no series; a node's identity prefix
(`/n/<node id>`, p2pfaas.tls) is dropped, and a request that matched no route counts as
"unmatched". `metrics_handler(expose, allow)` serves the Prometheus text format to callers in
`allow` (loopback by default: figures name the functions that run here and what the node earned),
and, behind a node's worker process, to the client address the worker vouches for.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST

from p2pfaas.metrics.catalog import HttpFigures

__all__ = [
    "CLIENT_HEADER",
    "DEFAULT_ALLOW",
    "TRUSTED_PROXY",
    "Exposure",
    "Network",
    "metrics_handler",
    "middleware",
    "parse_allow",
    "route_of",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_ALLOW: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
CLIENT_HEADER = "X-P2PFaaS-Client"  # set by a node's worker process for the primary, on its unix socket
TRUSTED_PROXY = web.AppKey("trusted_proxy", bool)  # an app whose callers are the node's own workers
_IDENTITY_PREFIX = re.compile(r"^/n/[0-9a-f]{8,64}(?=/)")


@dataclass(frozen=True)
class Exposure:
    """What an app needs to be measured and to serve /metrics: the request figures (None: the
    app's requests are counted elsewhere, as a node's internal app's are by its workers), the
    exposition, and who may read it."""

    figures: HttpFigures | None
    expose: Callable[[], bytes]
    allow: tuple[Network, ...] = DEFAULT_ALLOW

    def middlewares(self) -> list[Middleware]:
        return [] if self.figures is None else [middleware(self.figures)]

    def route(self) -> web.RouteDef:
        return web.get("/metrics", metrics_handler(self.expose, self.allow))


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return _template(resource.canonical)


@functools.lru_cache(maxsize=1024)  # route templates are few: the regex runs once for each
def _template(canonical: str) -> str:
    return _IDENTITY_PREFIX.sub("", canonical)


def middleware(figures: HttpFigures, *, skip: tuple[str, ...] = ()) -> Middleware:
    """Count and time every request but those of the route templates in `skip`."""

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_of(request)
        if route in skip:
            return await handler(request)
        loop = asyncio.get_running_loop()
        started = loop.time()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            figures.observe(route, status, loop.time() - started)

    return measure


def parse_allow(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """Who may scrape /metrics: loopback, and the `--metrics-allow` ranges `cidrs` (ValueError
    names a bad one)."""
    return DEFAULT_ALLOW + tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def metrics_handler(
    expose: Callable[[], bytes], allow: tuple[Network, ...] = DEFAULT_ALLOW
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        client = request.remote or ""  # "" through a relay's tunnel (a socket pair): a stranger
        if request.app.get(TRUSTED_PROXY, False):
            client = request.headers.get(CLIENT_HEADER, "")
        if not _allowed(client, allow):
            raise web.HTTPForbidden(text="metrics are served to the addresses in --metrics-allow only\n")
        return web.Response(body=expose(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return serve


def _allowed(client: str, allow: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allow)
