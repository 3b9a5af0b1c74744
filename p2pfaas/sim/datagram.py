"""`SimDatagramTransport`: a UDP endpoint on the simulated network.

Datagrams may be lost (`FaultOptions.datagram_loss`), reordered by jitter, or dropped at a partition or a
down host; nothing tells the sender (no ICMP). A connected endpoint (`remote_addr`) only hears its peer.
The protocol's callbacks run in the context of the task that created the endpoint.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
from typing import Any, cast

from p2pfaas.sim.fabric import Address, Fabric

__all__ = ["SimDatagramTransport"]


class SimDatagramTransport(asyncio.DatagramTransport):
    """A UDP endpoint bound to (host, port); `remote` set means a connected socket that only talks to it."""

    def __init__(
        self,
        network: Fabric,
        local: Address,
        remote: Address | None,
        context: contextvars.Context,
    ) -> None:
        super().__init__()
        self._network = network
        self.local, self.remote = local, remote
        self.context = context
        self._protocol: asyncio.DatagramProtocol | None = None
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": self.local, "peername": self.remote}.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = cast(asyncio.DatagramProtocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def get_write_buffer_size(self) -> int:
        return 0

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if addr is None:
            addr = self.remote
            if addr is None:
                raise ValueError("sendto() needs an address on an unconnected endpoint")
        elif self.remote is not None and tuple(addr) != self.remote:
            raise ValueError(f"Invalid address: must be None or {self.remote}")
        if self._closing:
            return
        payload = bytes(data)
        if len(payload) > self._network.options.max_datagram_bytes:
            exc = OSError(errno.EMSGSIZE, "Message too long")
            self._network.loop.call_soon(self._error_received, exc, context=self.context)
            return
        self._network.send_datagram(self.local, (str(addr[0]), int(addr[1])), payload)

    def close(self) -> None:
        self._shut(None)

    def abort(self) -> None:
        self._shut(None)

    def crash(self) -> None:
        self._shut(ConnectionAbortedError(errno.ECONNABORTED, "Simulated host crashed"))

    def start(self, protocol: asyncio.DatagramProtocol) -> None:
        self._protocol = protocol
        protocol.connection_made(self)

    def deliver(self, data: bytes, src: Address) -> None:
        """Called by the network in this endpoint's context when a datagram arrives."""
        if self._closing or self._protocol is None:
            return
        if self.remote is not None and src != self.remote:
            return  # a connected UDP socket filters other senders
        self._protocol.datagram_received(data, src)

    def _error_received(self, exc: OSError) -> None:
        if self._protocol is not None and not self._closing:
            self._protocol.error_received(exc)

    def _shut(self, exc: Exception | None) -> None:
        if self._closing:
            return
        self._closing = True
        self._network.unbind_datagram(self)
        if self._protocol is not None:
            self._network.loop.call_soon(self._protocol.connection_lost, exc, context=self.context)

    def __repr__(self) -> str:
        return f"<SimDatagramTransport {self.local[0]}:{self.local[1]}{' closed' if self._closing else ''}>"
