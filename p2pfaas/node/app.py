"""The node's HTTP API (aiohttp, MessagePack bodies).

Routes:
    POST /v1/invoke   InvokeRequest -> InvokeResult (200), or ErrorReply: 400 malformed,
                      403 bad signature / not allowed, 404 unknown function, 413 needs more
                      memory than the node lends, 503 busy (the reason may name a peer with room)
    GET  /v1/status                  -> NodeStatus (JSON with `Accept: application/json`)
    POST /v1/channels   ChannelTickets -> Ack: the lessee's latest payment-channel tickets
                        (p2pfaas/channels.py); 403 forged, 402 before the anchor's key is known
    POST /v1/forward, /v1/gossip, /v1/drain, /v1/jobs, /v1/jobs/{id} (a signed JobPoll): see
                                        node/placement.py
    GET  /v1/bundles/{digest}        -> Bundle, as stored (peers fetch bundles from each other and
                                        verify them), or 404
    GET  /v1/wheels/{sha256}         -> a wheel of a dependency layer held here (peers fetching
                                        the same layer check it against their lock), or 404
    POST /v1/lending  LendingChange -> Ack: `node pause|resume`, signed by the node's own key
    GET  /metrics                    -> the Prometheus text format (docs/metrics.md), to loopback
                                        and `--metrics-allow` callers only (403 otherwise)

A node with several worker processes (node/workers/) serves the same port from each. A worker
answers /v1/invoke itself and passes every other request to the primary process, over a unix socket
in the node's work directory where the primary serves the same routes plus one of its own:
    POST /internal/v1/place?hops=N   InvokeRequest -> InvokeResult: an invocation a worker claimed
                                     and has no slot for, placed by the primary's router (header
                                     X-P2PFaaS-Chain: the delegations that brought a paid one)
"""

from __future__ import annotations

import asyncio
import dataclasses

from aiohttp import web

from p2pfaas import codec, tls
from p2pfaas.errors import DecodeError, NotFound
from p2pfaas.messages import MAX_PAYLOAD_BYTES, Ack, ChannelTickets, Delegation, InvokeRequest, NodeStatus
from p2pfaas.metrics.http import TRUSTED_PROXY, Exposure
from p2pfaas.node.lending import LendingControl
from p2pfaas.node.placement import NodePlacement
from p2pfaas.node.service import NodeService
from p2pfaas.placement.wire import MAX_HOPS
from p2pfaas.relay import RelayHub
from p2pfaas.rpc import CONTENT_TYPE, error_middleware, read_message, reply

SERVICE_KEY = web.AppKey("service", NodeService)
LENDING_KEY = web.AppKey("lending", LendingControl)  # when the node pauses on its owner's terms
PLACEMENT_KEY = web.AppKey("placement", NodePlacement)  # when the daemon runs placement (issue #6)


async def invoke(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    msg = await read_message(request, InvokeRequest)
    placement = request.app.get(PLACEMENT_KEY)
    if placement is not None:  # local-or-forward (p2pfaas/node/router.py)
        return reply(await placement.router.invoke(msg))
    return reply(await service.invoke(msg))


async def status(request: web.Request) -> web.Response:
    """The node's status: MessagePack, or JSON when the caller asks for it (`Accept: application/json`,
    as a browser or `curl -H` would)."""
    service = request.app[SERVICE_KEY]
    answer = NodeStatus(
        node_id=service.node_id,
        url=service.url,
        executor=service.executor.kind,
        sandboxed=service.executor.sandboxed,
        invocations=service.stats.invocations,
        in_flight=service.stats.in_flight,
        cached_bundles=len(service.bundles.cache),
        away=lending.lending.reason()[:256] if (lending := request.app.get(LENDING_KEY)) else "",
    )
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(dataclasses.asdict(answer))
    return reply(answer)


async def channels(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    msg = await read_message(request, ChannelTickets)
    if service.offer_channels is None:
        raise NotFound("this node takes no payments")
    return reply(Ack(f"kept {service.offer_channels(msg)} of {len(msg.tickets)} channel tickets"))


async def bundle(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    digest = request.match_info["digest"]
    data = await asyncio.to_thread(service.bundles.cache.archive_bytes, digest)
    if data is None:
        raise NotFound(f"this node does not hold bundle {digest[:80]}")
    return web.Response(body=data, content_type=CONTENT_TYPE)


async def wheel(request: web.Request) -> web.StreamResponse:
    """A wheel of a dependency layer this node holds, for a peer fetching the same layer (it checks
    the bytes against its own lock: a wheel is content-addressed)."""
    layers = request.app[SERVICE_KEY].layers
    sha256 = request.match_info["sha256"]
    path = None if layers is None else layers.wheel_file(sha256)
    if path is None:
        raise NotFound(f"this node holds no wheel {sha256[:80]}")
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})


async def place_for_sibling(request: web.Request) -> web.Response:
    msg = await read_message(request, InvokeRequest)
    try:
        hops = int(request.query.get("hops", "0"))
    except ValueError:
        raise DecodeError("hops must be an integer") from None
    if not 0 <= hops < MAX_HOPS:
        raise DecodeError(f"hops {hops} outside 0..{MAX_HOPS - 1}")
    chain = decode_chain(request.headers.get(CHAIN_HEADER, ""))
    return reply(await request.app[PLACEMENT_KEY].router.place_for_sibling(msg, hops, chain))


CHAIN_HEADER = "X-P2PFaaS-Chain"  # a paid invocation's delegations, on the internal hand-off only


def encode_chain(chain: tuple[Delegation, ...]) -> str:
    return ",".join(codec.encode(hop).hex() for hop in chain)


def decode_chain(text: str) -> tuple[Delegation, ...]:
    try:
        return tuple(codec.decode_as(Delegation, bytes.fromhex(part)) for part in text.split(",") if part)
    except ValueError:
        raise DecodeError("the delegation chain header is not hex") from None


def make_internal_app(
    service: NodeService,
    placement: NodePlacement,
    *,
    exposure: Exposure | None = None,
    lending: LendingControl | None = None,
) -> web.Application:
    """The primary's app for its sibling worker processes (on a unix socket only the node's user
    can open): every public route, and the hand-off of invocations a worker has no slot for. The
    requests workers pass on are counted here; /metrics trusts the client address they name."""
    app = make_app(service, placement, exposure=exposure, lending=lending)
    app[TRUSTED_PROXY] = True
    app.add_routes([web.post("/internal/v1/place", place_for_sibling)])
    return app


def make_app(
    service: NodeService,
    placement: NodePlacement | None = None,
    *,
    relay: RelayHub | None = None,
    exposure: Exposure | None = None,
    lending: LendingControl | None = None,
) -> web.Application:
    """`exposure`: count and time the requests, and serve GET /metrics (`p2pfaas.metrics`)."""
    middlewares = [*(exposure.middlewares() if exposure else ()), error_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_PAYLOAD_BYTES + 64 * 1024)
    app[SERVICE_KEY] = service
    routes: list[web.RouteDef] = []
    if relay is not None:  # relaying for nodes behind NAT (p2pfaas/relay); refused until we are reachable
        routes += relay.routes()

        async def close_links(app: web.Application) -> None:
            await relay.aclose()

        app.on_shutdown.append(close_links)
    if placement is not None:  # forward, gossip, drain and async-job routes (issue #6)
        app[PLACEMENT_KEY] = placement
        routes += placement.routes()
    if lending is not None:  # POST /v1/lending: `node pause|resume` (node/lending.py)
        app[LENDING_KEY] = lending
        routes += lending.routes()
    routes += [
        web.post("/v1/invoke", invoke),
        web.get("/v1/status", status),
        web.post("/v1/channels", channels),
        web.get("/v1/bundles/{digest}", bundle),
        web.get("/v1/wheels/{sha256}", wheel),
        *((exposure.route(),) if exposure else ()),
    ]
    app.add_routes(routes + _under(tls.identity_path(service.node_id), routes))
    return app


def _under(prefix: str, routes: list[web.RouteDef]) -> list[web.RouteDef]:
    """The same routes under `prefix`: a node's HTTPS URL names its identity in its path
    (`https://HOST:PORT/n/<node id>`, p2pfaas.tls), and callers append `/v1/...` to that base."""
    return [web.RouteDef(r.method, prefix + r.path, r.handler, r.kwargs) for r in routes]
