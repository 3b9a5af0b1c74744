"""The node's HTTP API (aiohttp, MessagePack bodies).

Routes:
    POST /v1/invoke   InvokeRequest -> InvokeResult (200), or ErrorReply: 400 malformed,
                      403 bad signature / not allowed, 404 unknown function, 413 needs more
                      memory than the node lends, 503 busy (the reason may name a peer with room)
    GET  /v1/status                  -> NodeStatus
    POST /v1/forward, /v1/gossip, /v1/drain, /v1/jobs, GET /v1/jobs/{id}: see node/placement.py
    GET  /v1/bundles/{digest}        -> Bundle, as stored (peers fetch bundles from each other and
                                        verify them), or 404
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from p2pfaas.errors import NotFound
from p2pfaas.messages import MAX_PAYLOAD_BYTES, InvokeRequest, NodeStatus
from p2pfaas.node.placement import NodePlacement
from p2pfaas.node.service import NodeService
from p2pfaas.rpc import CONTENT_TYPE, error_middleware, read_message, reply

SERVICE_KEY = web.AppKey("service", NodeService)
PLACEMENT_KEY = web.AppKey("placement", NodePlacement)  # when the daemon runs placement (issue #6)


async def invoke(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    msg = await read_message(request, InvokeRequest)
    placement = request.app.get(PLACEMENT_KEY)
    if placement is not None:  # local-or-forward (p2pfaas/node/router.py)
        return reply(await placement.router.invoke(msg))
    return reply(await service.invoke(msg))


async def status(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    return reply(
        NodeStatus(
            node_id=service.node_id,
            url=service.url,
            executor=service.executor.kind,
            sandboxed=service.executor.sandboxed,
            invocations=service.stats.invocations,
            in_flight=service.stats.in_flight,
            cached_bundles=len(service.cache),
        )
    )


async def bundle(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    digest = request.match_info["digest"]
    data = await asyncio.to_thread(service.cache.archive_bytes, digest)
    if data is None:
        raise NotFound(f"this node does not hold bundle {digest[:80]}")
    return web.Response(body=data, content_type=CONTENT_TYPE)


def make_app(service: NodeService, placement: NodePlacement | None = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_PAYLOAD_BYTES + 64 * 1024)
    app[SERVICE_KEY] = service
    if placement is not None:  # forward, gossip, drain and async-job routes (issue #6)
        app[PLACEMENT_KEY] = placement
        app.add_routes(placement.routes())
    app.add_routes(
        [
            web.post("/v1/invoke", invoke),
            web.get("/v1/status", status),
            web.get("/v1/bundles/{digest}", bundle),
        ]
    )
    return app
