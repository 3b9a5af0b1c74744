"""The kit of the relay tests: an aiohttp app served on loopback, a relay hub, a stand-in for a node's
HTTP service answering HTTPS on its identity key, and a node linked to a relay."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from p2pfaas import tls
from p2pfaas.identity import KeyPair
from p2pfaas.relay import RelayHub, RelayLink, wire
from p2pfaas.rpc import error_middleware

Serve = Callable[[socket.socket], Awaitable[None]]


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
async def relay(hub: RelayHub | None = None) -> AsyncIterator[tuple[str, RelayHub]]:
    hub = hub or RelayHub()
    app = web.Application(middlewares=[error_middleware], client_max_size=wire.MAX_FRAME)
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
        if request.path.endswith("/bytes"):
            return web.Response(body=body[::-1])
        if request.path.endswith("/big"):
            return web.Response(body=b"z" * int(request.query["n"]))
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "body": body.decode(),
                "x": request.headers.get("X-T"),
                "remote": request.remote,
            },
            status=201,
            headers={"X-Answer": "yes"},
        )

    app = web.Application(client_max_size=16 << 20)
    app.add_routes([web.route("*", "/{tail:.*}", echo)])
    return app


@asynccontextmanager
async def https_on_key(keys: KeyPair, directory: Path) -> AsyncIterator[Serve]:
    """`serve(sock)` answering `node_app()` over TLS on `keys`, as a node answers its tunnels."""
    runner = web.AppRunner(node_app())
    await runner.setup()
    context = tls.server_context(*tls.write_node_certificate(keys, directory))
    server, loop = runner.server, asyncio.get_running_loop()
    assert server is not None

    async def answer(sock: socket.socket) -> None:
        await loop.connect_accepted_socket(server, sock, ssl=context)

    try:
        yield answer
    finally:
        await runner.cleanup()


@asynccontextmanager
async def linked_node(
    relays: Callable[[], list[str]], keys: KeyPair, directory: Path, *, retry_s: float = 2.0
) -> AsyncIterator[tuple[RelayLink, list[str | None]]]:
    """A node stand-in linked to the first of `relays()` that takes it; the URLs it was told."""
    urls: list[str | None] = []

    async def candidates() -> list[str]:
        return relays()

    async with https_on_key(keys, directory) as answer, aiohttp.ClientSession() as session, RelayLink(
        session=session, keys=keys, candidates=candidates, serve=answer, on_url=urls.append,
        rng=random.Random(1), retry_s=retry_s,
    ) as link:  # fmt: skip
        await asyncio.wait_for(link.connected.wait(), 10)
        yield link, urls
