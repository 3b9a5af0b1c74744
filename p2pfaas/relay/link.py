"""The node's side of a relay: keep one WebSocket to a relay open and answer the tunnels it carries.

`RelayLink` is an async context manager run by a node that cannot be reached directly. Its task dials
the first relay of `candidates()` that accepts it, signs the relay's challenge, and reports the
relayed URL through `on_url`. Each tunnel a caller opens there arrives as a stream
(`relay/stream.py`): the link makes a socket pair, hands one end to `serve` (the node's TLS listener
on its own identity key: the caller's TLS ends in the node, not in the relay) and pumps the other to
and from the stream. When the relay goes away (closed, killed, partitioned: the heartbeat notices),
`on_url(None)` is reported and the next candidate is tried, so a dead relay is replaced within a few
heartbeats.

It does not decide whether the node needs a relay (`node/reachability.py` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType

import aiohttp

from p2pfaas import codec, signing, tls
from p2pfaas.clock import wall_time
from p2pfaas.errors import DecodeError
from p2pfaas.identity import KeyPair
from p2pfaas.lifecycle import TaskSet
from p2pfaas.relay import wire
from p2pfaas.relay.hub import HELLO_TIMEOUT_S
from p2pfaas.relay.stream import Put, Stream
from p2pfaas.tunnel import HEARTBEAT_S

log = logging.getLogger(__name__)

MAX_STREAMS = 256  # tunnels one relay may hold open to this node at once


class RelayLink:
    """`async with RelayLink(session=, keys=, candidates=, serve=, on_url=, rng=) as link:`; its own task.

    `serve(sock)` must start answering HTTPS on the connected socket `sock` (and own it)."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        keys: KeyPair,
        candidates: Callable[[], Awaitable[list[str]]],
        serve: Callable[[socket.socket], Awaitable[None]],
        on_url: Callable[[str | None], None],
        rng: random.Random,
        retry_s: float = 2.0,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        self.session = session
        self.keys = keys
        self.candidates = candidates
        self.serve = serve
        self.on_url = on_url
        self.rng = rng
        self.retry_s = retry_s
        self.max_streams = max_streams
        self.url: str | None = None
        self.relay: str | None = None
        self.connected = asyncio.Event()
        self.relays_used = 0
        self.tunnels = 0
        self._tasks = TaskSet()
        self._streams = TaskSet()

    async def __aenter__(self) -> RelayLink:
        self._tasks.spawn(self._run(), name="relay-link")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._tasks.cancel()
        await self._streams.cancel()

    async def _run(self) -> None:
        last: str | None = None
        while True:
            relays = [r.rstrip("/") for r in await self.candidates()]
            # The relay that just failed goes last: a dead one is replaced, a flapping one retried later.
            relays.sort(key=lambda r: r == last)
            for relay in relays:
                try:
                    await self._serve(relay)
                except (aiohttp.ClientError, OSError, TimeoutError, DecodeError) as exc:
                    log.info("relay %s: %s: %s", relay, type(exc).__name__, exc)
                finally:
                    if self.url is not None:
                        log.warning("lost relay %s; looking for another", relay)
                    self.url = self.relay = None
                    self.connected.clear()
                    self.on_url(None)
                last = relay
            await asyncio.sleep(self.retry_s * self.rng.uniform(0.5, 1.5))

    async def _serve(self, relay: str) -> None:
        async with self.session.ws_connect(
            f"{relay}/v1/relay/connect",
            ssl=tls.ssl_for(relay),  # a node relay's https URL names the identity it must prove
            heartbeat=HEARTBEAT_S,
            max_msg_size=wire.MAX_FRAME,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
        ) as ws:
            challenge = codec.decode_as(wire.RelayChallenge, (await ws.receive(timeout=HELLO_TIMEOUT_S)).data)
            hello = signing.sign(
                wire.RelayHello(
                    nonce=challenge.nonce, relay_url=challenge.relay_url, issued_at=wall_time(),
                    signer=b"", signature=b"",
                ),
                self.keys,
            )  # fmt: skip
            await ws.send_bytes(codec.encode(hello))
            frame = await ws.receive(timeout=HELLO_TIMEOUT_S)
            if frame.type != aiohttp.WSMsgType.BINARY:
                raise aiohttp.ClientError(f"the relay refused our hello ({frame.type.name})")
            welcome = codec.decode_as(wire.RelayWelcome, frame.data)
            if welcome.node_id != self.keys.key_id:
                raise aiohttp.ClientError("the relay welcomed another node")
            self.url, self.relay = welcome.url, relay
            self.relays_used += 1
            self.connected.set()
            self.on_url(welcome.url)
            log.info("reachable through relay %s as %s", relay, welcome.url)
            lock = asyncio.Lock()

            async def put(frame: codec.Message) -> None:
                async with lock:
                    await ws.send_bytes(codec.encode(frame))

            streams: dict[int, Stream] = {}
            try:
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.BINARY:
                        break
                    self._on_frame(codec.decode(message.data), streams, put)
            finally:
                for stream in streams.values():
                    stream.ended()

    def _on_frame(self, frame: codec.Message, streams: dict[int, Stream], put: Put) -> None:
        if isinstance(frame, wire.TunnelOpen):
            if frame.stream in streams or len(streams) >= self.max_streams:
                # A relay that reuses a stream or opens past our bound is broken or hostile: leave it.
                raise aiohttp.ClientError(
                    f"the relay opened tunnel {frame.stream} past the rules; leaving it"
                )
            stream = streams[frame.stream] = Stream(frame.stream, put)
            self.tunnels += 1
            self._streams.spawn(self._answer(stream, streams))
            return
        known = streams.get(getattr(frame, "stream", -1))
        if known is None:
            return  # a frame of a tunnel already over, or one the relay should not send: ignored
        if isinstance(frame, wire.TunnelData):
            if not known.deliver(frame.data):
                log.warning("the relay overran tunnel %d's window; dropping it", frame.stream)
                known.drop()  # its `_answer` ends and tells the relay
        elif isinstance(frame, wire.TunnelAck):
            known.acknowledged(frame.count)
        elif isinstance(frame, wire.TunnelClose):
            known.ended()

    async def _answer(self, stream: Stream, streams: dict[int, Stream]) -> None:
        """One tunnel: a socket pair between the stream and the node's TLS listener, until either ends."""
        near, far = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=near, limit=wire.MAX_CHUNK)

        async def inward() -> None:  # the caller's bytes to the node
            while data := await stream.receive():
                writer.write(data)
                await writer.drain()

        async def outward() -> None:  # the node's bytes to the caller
            while data := await reader.read(wire.MAX_CHUNK):
                await stream.send(data)

        async def answer() -> None:  # returns once TLS is up, which needs the pumps running
            try:
                await self.serve(far)
            except BaseException as exc:
                log.info("tunnel %d: the node did not take it: %r", stream.stream, exc)
                far.close()
                raise

        tasks = [asyncio.create_task(inward()), asyncio.create_task(outward())]
        serving = asyncio.create_task(answer())
        try:
            done, _ = await asyncio.wait([*tasks, serving], return_when=asyncio.FIRST_COMPLETED)
            if serving in done and serving.exception() is None:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            writer.close()  # first: a second cancellation may cut what follows short
            streams.pop(stream.stream, None)
            serving.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(serving, *tasks, return_exceptions=True)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await stream.close()
