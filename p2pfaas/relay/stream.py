"""One end of a tunnel stream on a relay link: bytes out under a window, bytes in as they arrive.

Many tunnels share one WebSocket between a relay and a node, so none may hold up the others: a sender
has at most `wire.WINDOW` bytes of a stream unacknowledged, and the receiver acknowledges bytes only
once it has passed them on (to the caller's WebSocket, or to the node's TLS listener). A peer that
sends past the window is breaking the protocol; `deliver` says so and the stream is dropped. Memory
per stream is therefore bounded by the window whatever the peer does.

Both ends (`relay/hub.py`, `relay/link.py`) use this class; it knows nothing of what is outside them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from p2pfaas import codec
from p2pfaas.relay import wire

Put = Callable[[codec.Message], Awaitable[None]]  # sends one frame on the link


class Stream:
    def __init__(self, stream: int, put: Put, *, window: int = wire.WINDOW) -> None:
        self.stream = stream
        self.window = window
        self.closed = False  # no more bytes either way
        self._told = False  # the peer knows the stream is over (it closed it, or we sent TunnelClose)
        self._put = put
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()  # b"": the end
        self._queued = 0  # bytes delivered and not yet taken
        self._unacked = 0  # bytes sent and not yet acknowledged
        self._room = asyncio.Event()
        self._room.set()

    # -- out ------------------------------------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        """Frame `data` onto the link, waiting for room in the window; ConnectionResetError once closed."""
        for at in range(0, len(data), wire.MAX_CHUNK):
            chunk = data[at : at + wire.MAX_CHUNK]
            while self._unacked and self._unacked + len(chunk) > self.window and not self.closed:
                self._room.clear()
                await self._room.wait()
            if self.closed:
                raise ConnectionResetError(f"tunnel stream {self.stream} is closed")
            self._unacked += len(chunk)
            await self._put(wire.TunnelData(stream=self.stream, data=chunk))

    async def close(self, reason: str = "") -> None:
        """End the stream on both sides (the peer gets every byte sent before); idempotent. The peer
        is told unless it closed the stream itself, also after `drop`."""
        self._stop()
        if not self._told:
            self._told = True
            await self._put(wire.TunnelClose(stream=self.stream, reason=reason[:200]))

    # -- in: called by the link's reader, never blocking ---------------------------------------------------
    def deliver(self, data: bytes) -> bool:
        """Queue bytes from the peer; False when the peer sent past the window (drop the stream)."""
        if self.closed:
            return True  # late bytes of a stream we ended: dropped
        self._queued += len(data)
        if self._queued > self.window:
            return False
        self._inbox.put_nowait(data)
        return True

    def acknowledged(self, count: int) -> None:
        self._unacked = max(0, self._unacked - count)
        self._room.set()  # the sender looks again whether its next chunk fits

    def ended(self) -> None:
        """The peer closed the stream, or the link under it went away: nobody is left to tell."""
        self._told = True
        self._stop()

    def drop(self) -> None:
        """End the stream from this side at once (the peer broke the protocol); the owner's `close`
        then tells the peer."""
        self._stop()

    def _stop(self) -> None:
        if not self.closed:
            self.closed = True
            self._inbox.put_nowait(b"")
            self._room.set()

    async def receive(self) -> bytes:
        """The next bytes from the peer, acknowledged as taken; b"" at the end."""
        data = await self._inbox.get()
        if not data:
            self._inbox.put_nowait(b"")  # every later call sees the end too
            return b""
        self._queued -= len(data)
        if not self.closed:
            await self._put(wire.TunnelAck(stream=self.stream, count=len(data)))
        return data
