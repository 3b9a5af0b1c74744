"""In-memory stream connections: `SimStreamTransport` (one end) and `Pipe` (one direction in flight).

`SimStreamTransport` behaves like asyncio's TCP transport as seen by a `Protocol`: bytes written on one end
arrive at the other after the link's latency, in order, exactly once; `close()` sends a FIN (the peer's
`eof_received`, then its own close unless it keeps the half-open connection), `abort()` sends a RST
(the peer's `connection_lost(ConnectionResetError)`), `write_eof()` half-closes. Each protocol callback runs
in the `contextvars.Context` of the end's owner (the task that connected, or the one that created the
server), so tasks a server protocol spawns know which simulated host they run on.

Not modelled: send buffers and flow control (writes never block, `get_write_buffer_size()` is 0), Nagle,
segment boundaries (a write arrives as one `data_received` call), TLS, keepalive probes.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from p2pfaas.sim.fabric import Address, Fabric

__all__ = ["Pipe", "SimStreamTransport"]

_DATA, _EOF, _RST = "data", "eof", "rst"


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Hand `data` to a Protocol or a BufferedProtocol, as asyncio's selector transports do."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view)))
            count = min(len(buffer), len(view))
            if count == 0:
                raise RuntimeError("get_buffer() returned an empty buffer")
            buffer[:count] = view[:count]
            protocol.buffer_updated(count)
            view = view[count:]
    else:
        cast(asyncio.Protocol, protocol).data_received(data)


class Pipe:
    """One direction of a stream connection: segments in flight, delivered in order after their latency.

    While the link is partitioned the pipe parks (its segments wait, as TCP retransmits would) and the
    network restarts it on heal.
    """

    def __init__(self, network: Fabric, src: Address, dst: Address) -> None:
        self._network = network
        self.src, self.dst = src, dst
        self.receiver: SimStreamTransport | None = None
        self._queue: deque[tuple[float, str, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last_arrival = 0.0
        self.parked = False

    def send(self, kind: str, data: bytes = b"") -> None:
        loop = self._network.loop
        # A segment never overtakes the one before it, whatever jitter it drew: TCP delivers in order.
        arrival = max(loop.time() + self._network.delay_s(self.src[0], self.dst[0]), self._last_arrival)
        self._last_arrival = arrival
        self._queue.append((arrival, kind, data))
        if self._timer is None and not self.parked:
            self._arm(arrival)

    def _arm(self, when: float) -> None:
        assert self.receiver is not None
        loop = self._network.loop
        self._timer = loop.call_at(max(when, loop.time()), self._fire, context=self.receiver.context)

    def _fire(self) -> None:
        self._timer = None
        if not self._queue or self.receiver is None:
            return
        if self._network.is_blocked(self.src[0], self.dst[0]):
            self.parked = True
            self._network.park(self)
            return
        if not self._network.is_up(self.dst[0]):
            self._queue.clear()  # the receiver's host crashed; its endpoints are gone
            return
        _arrival, kind, data = self._queue.popleft()
        self._network.record(f"tcp-{kind}", self.src, self.dst, len(data))
        self.receiver.receive(kind, data)
        if self._queue and self._timer is None and not self.parked:
            self._arm(self._queue[0][0])

    def unpark(self) -> None:
        """Resume after a heal: the head segment is retransmitted and takes one latency from now."""
        self.parked = False
        if self._queue and self._timer is None:
            self._arm(self._network.loop.time() + self._network.delay_s(self.src[0], self.dst[0]))

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


class SimStreamTransport(asyncio.Transport):
    """One end of an in-memory stream connection. Driven by its protocol (writes) and its inbound `Pipe`."""

    def __init__(
        self,
        network: Fabric,
        local: Address,
        peer: Address,
        out: Pipe,
        context: contextvars.Context,
    ) -> None:
        super().__init__()
        self._network = network
        self.local, self.peer = local, peer
        self._out = out
        self.context = context
        self._protocol: asyncio.BaseProtocol | None = None
        self._inbox: deque[tuple[str, bytes]] = deque()
        self._paused = False
        self._closing = False
        self._lost = False
        self._eof_written = False
        self._rst_sent = False
        self._high, self._low = 64 * 1024, 16 * 1024
        self.on_lost: Callable[[SimStreamTransport], None] | None = None

    # -- the asyncio.Transport interface ---------------------------------------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        # 'socket' is None on purpose: aiohttp then skips TCP_NODELAY/keepalive setsockopt calls.
        return {"peername": self.peer, "sockname": self.local}.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._network.loop.call_soon(self._drain_inbox, context=self.context)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        return 0  # bytes leave at once: the simulated network has no send buffer or bandwidth limit

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._closing or not data:
            return  # asyncio too drops writes to a closing transport (after logging a few)
        self._out.send(_DATA, bytes(data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        self._out.send(_EOF)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if not self._eof_written:
            self._eof_written = True
            self._out.send(_EOF)
        self._network.loop.call_soon(self._connection_lost, None, context=self.context)

    def abort(self) -> None:
        self._reset(None)

    # -- driven by the network -------------------------------------------------------------------------
    def start(self, protocol: asyncio.BaseProtocol) -> None:
        """Attach the protocol and tell it the connection is made (called once, in `context`)."""
        self._protocol = protocol
        protocol.connection_made(self)
        if self._inbox:
            self._drain_inbox()

    def receive(self, kind: str, data: bytes) -> None:
        if self._lost:
            if kind == _DATA and not self._rst_sent:
                self._send_rst()  # data for a socket nobody reads: the kernel answers with a RST
            return
        if kind == _RST:
            self._inbox.clear()
            self._closing = True
            self._connection_lost(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))
            return
        self._inbox.append((kind, data))
        if self._protocol is not None and not self._paused:
            self._drain_inbox()

    def crash(self) -> None:
        """This end's host crashed: the peer is reset, this end's protocol is told the connection aborted."""
        self._reset(ConnectionAbortedError(errno.ECONNABORTED, "Simulated host crashed"))

    # -- internals -------------------------------------------------------------------------------------
    def _reset(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._closing = True
        self._inbox.clear()
        self._send_rst()
        self._network.loop.call_soon(self._connection_lost, exc, context=self.context)

    def _send_rst(self) -> None:
        self._rst_sent = True
        self._out.send(_RST)

    def _drain_inbox(self) -> None:
        protocol = self._protocol
        while self._inbox and not self._paused and not self._lost and protocol is not None:
            kind, data = self._inbox.popleft()
            try:
                if kind == _DATA:
                    if not self._closing:
                        _feed(protocol, data)
                elif not self._closing:
                    keep_open = cast(asyncio.Protocol, protocol).eof_received()
                    if not keep_open:
                        self.close()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc)
                return
            protocol = self._protocol

    def _fatal_error(self, exc: BaseException) -> None:
        # As asyncio's selector transports do: report a protocol bug, then drop the connection.
        self._network.loop.call_exception_handler(
            {"message": "Fatal error: protocol callback raised", "exception": exc, "transport": self}
        )
        self._reset(exc if isinstance(exc, Exception) else None)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        try:
            if self._protocol is not None:
                self._protocol.connection_lost(exc)
        finally:
            if self.on_lost is not None:
                self.on_lost(self)

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<SimStreamTransport {self.local[0]}:{self.local[1]}->{self.peer[0]}:{self.peer[1]} {state}>"
