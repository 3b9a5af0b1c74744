"""The anchor server's lifecycle: open and migrate the database, serve the API, stop cleanly.

`AnchorServer` is an async context manager (database, then HTTP site; closed in reverse).
`serve_anchor` adds signal handling for `p2pfaas anchor serve`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from p2pfaas import tls
from p2pfaas.anchor.app import AnchorSettings, make_app, set_public_url
from p2pfaas.db.engine import open_database
from p2pfaas.dht.node import DhtNode, running_node
from p2pfaas.lifecycle import StackService

DEFAULT_PORT = 8700

log = logging.getLogger(__name__)


class AnchorServer(StackService):
    """One anchor. `async with AnchorServer(db_url, host, port) as anchor: print(anchor.url)`."""

    def __init__(
        self,
        db_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        settings: AnchorSettings | None = None,
        dht_port: int | None = None,
    ) -> None:
        self.db_url = db_url
        self.dht_port = dht_port  # None: no bootstrap DHT node; 0: any free UDP port
        self.dht: DhtNode | None = None
        self.settings = settings or AnchorSettings()
        self.host = host
        self.port = port
        self.url = ""  # where it listens: http://HOST:PORT
        self.public_url = ""  # where clients reach it: `settings.public_url`, else `url`

    async def _start(self) -> None:
        db = await self._stack.enter_async_context(open_database(self.db_url))
        app = self.app = make_app(db, settings=self.settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        context = None
        if self.settings.tls_cert:
            context = tls.server_context(Path(self.settings.tls_cert), Path(self.settings.tls_key))
        await web.TCPSite(runner, self.host, self.port, ssl_context=context).start()
        port = next((a[1] for a in runner.addresses if isinstance(a, tuple)), self.port)
        self.url = f"{'https' if context else 'http'}://{self.host}:{port}"
        # Key claims name the anchor they are for; it is this configured URL, never a Host header.
        self.public_url = self.settings.public_url or self.url
        set_public_url(app, self.public_url)
        if self.dht_port is not None:
            self.dht = await self._stack.enter_async_context(running_node(self.host, self.dht_port))


async def serve_anchor(
    db_url: str, *, host: str, port: int, settings: AnchorSettings | None = None, dht_port: int | None = None
) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AnchorServer(db_url, host=host, port=port, settings=settings, dht_port=dht_port) as anchor:
        log.info("anchor serving on %s as %s", anchor.url, anchor.public_url)  # for --log-format json
        print(
            f"anchor serving on {anchor.url} as {anchor.public_url} (database: {_redact(db_url)})", flush=True
        )
        if anchor.dht is not None:
            print("bootstrap DHT node on {}:{} (udp)".format(*anchor.dht.address), flush=True)
        await stop.wait()
    print("anchor stopped", flush=True)


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
