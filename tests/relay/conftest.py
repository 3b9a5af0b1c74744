"""The kit of the relay tests: an aiohttp app served on loopback, a relay hub, and a stand-in for a
node's HTTP service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from p2pfaas.relay import RelayHub, wire
from p2pfaas.rpc import error_middleware


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def relay() -> AsyncIterator[tuple[str, RelayHub]]:
    hub = RelayHub(request_timeout_s=5.0)
    app = web.Application(middlewares=[error_middleware], client_max_size=wire.MAX_BODY_BYTES)
    app.add_routes(hub.routes())
    async with serve(app) as url:
        hub.base_url = url
        yield url, hub
        await hub.aclose()


def node_app() -> web.Application:
    """A stand-in for the node's HTTP service: echoes what it got, and can be slow."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        if request.query.get("sleep"):
            await asyncio.sleep(float(request.query["sleep"]))
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "body": body.decode(),
                "x": request.headers.get("X-T"),
            },
            status=201,
            headers={"X-Answer": "yes"},
        )

    app = web.Application()
    app.add_routes([web.route("*", "/{tail:.*}", echo)])
    return app
