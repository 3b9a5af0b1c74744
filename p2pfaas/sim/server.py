"""`SimServer`: what `SimLoop.create_server` returns; enough of `asyncio.Server` for aiohttp's runner.

aiohttp's `TCPSite` reads `sockets[0].getsockname()` (so port 0 works) and calls `close()`; `AppRunner`
shuts connections down through its own handlers. `close()` stops listening and leaves established connections
up, as `asyncio.Server` did before 3.13; `close_clients()`/`abort_clients()` end them. `wait_closed()`
returns at once.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

from p2pfaas.sim.fabric import Address, Fabric
from p2pfaas.sim.stream import SimStreamTransport

__all__ = ["SimServer", "SimSocket"]


class SimSocket:
    """Stands in for a listening socket in `SimServer.sockets`: answers `getsockname()` and little else."""

    family = 2  # AF_INET
    type = 1  # SOCK_STREAM

    def __init__(self, address: Address) -> None:
        self._address = address

    def getsockname(self) -> Address:
        return self._address

    def fileno(self) -> int:
        return -1

    def __repr__(self) -> str:
        return f"<SimSocket {self._address[0]}:{self._address[1]}>"


class SimServer(asyncio.AbstractServer):
    """A listening stream endpoint on one or more (host, port) addresses. Driven by `SimLoop`."""

    def __init__(
        self,
        network: Fabric,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        addresses: list[Address],
        context: contextvars.Context,
    ) -> None:
        self._network = network
        self.protocol_factory = protocol_factory
        self.addresses = addresses
        self.context = context
        self._serving = False
        self._closed = False
        self._connections: set[SimStreamTransport] = set()
        self._serving_forever: asyncio.Future[None] | None = None

    @property
    def sockets(self) -> tuple[SimSocket, ...]:
        return () if self._closed else tuple(SimSocket(address) for address in self.addresses)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._network.loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        self._serving = True  # the network registered this server when the loop made it

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        await self.start_serving()
        self._serving_forever = self._network.loop.create_future()
        try:
            await self._serving_forever
        finally:
            self.close()
            self._serving_forever = None

    def close(self) -> None:
        """Stop listening; established connections stay up, as with asyncio.Server before 3.13."""
        if self._closed:
            return
        self._closed = True
        self._serving = False
        self._network.unlisten(self)
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()

    async def wait_closed(self) -> None:
        return None

    def close_clients(self) -> None:
        for transport in list(self._connections):
            transport.close()

    def abort_clients(self) -> None:
        for transport in list(self._connections):
            transport.abort()

    def accept(self, transport: SimStreamTransport) -> None:
        """Run in `context`: make a protocol for a new connection, as the listening socket's accept would."""
        self._connections.add(transport)
        previous = transport.on_lost

        def forget(lost: SimStreamTransport) -> None:
            self._connections.discard(lost)
            if previous is not None:
                previous(lost)

        transport.on_lost = forget
        try:
            protocol = self.protocol_factory()
        except Exception as exc:
            self._network.loop.call_exception_handler(
                {"message": "protocol_factory raised on accept", "exception": exc, "transport": transport}
            )
            transport.abort()
            return
        transport.start(protocol)

    def __repr__(self) -> str:
        return f"<SimServer {self.addresses} {'serving' if self._serving else 'closed'}>"
