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
        self.closed = False
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
            while self._unacked >= self.window and not self.closed:
                await self._room.wait()
            if self.closed:
                raise ConnectionResetError(f"tunnel stream {self.stream} is closed")
            self._unacked += len(chunk)
            if self._unacked >= self.window:
                self._room.clear()
            await self._put(wire.TunnelData(stream=self.stream, data=chunk))

    async def close(self, reason: str = "") -> None:
        """End the stream on both sides (the peer gets every byte sent before); idempotent."""
        if self.closed:
            return
        self.ended()
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
        if self._unacked < self.window:
            self._room.set()

    def ended(self) -> None:
        """The peer closed the stream, or the link under it went away."""
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
