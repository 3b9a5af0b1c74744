"""The node's side of a relay: keep one WebSocket to a relay open and serve what arrives on it.

`RelayLink` is an async context manager run by a node that cannot be reached directly. Its task dials
the first relay of `candidates()` that accepts it, signs the relay's challenge, reports the relayed
URL through `on_url`, and runs every framed request against the node's own HTTP service at
`local_url` (loopback: the relay chooses only the path, never the host). When the relay goes away
(closed, killed, partitioned: the heartbeat notices), `on_url(None)` is reported and the next
candidate is tried, so a dead relay is replaced within a few heartbeats.

It does not decide whether the node needs a relay (`node/reachability.py` does).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from types import TracebackType

import aiohttp

from p2pfaas import codec, signing, tls
from p2pfaas.clock import wall_time
from p2pfaas.errors import DecodeError
from p2pfaas.identity import KeyPair
from p2pfaas.lifecycle import TaskSet
from p2pfaas.messages import ErrorReply
from p2pfaas.relay import wire
from p2pfaas.relay.hub import HEARTBEAT_S, HELLO_TIMEOUT_S
from p2pfaas.rpc import CONTENT_TYPE, RELAYED_HEADER

log = logging.getLogger(__name__)

LOCAL_TIMEOUT_S = 330.0  # a relayed request may run as long as an invocation may


class RelayLink:
    """`async with RelayLink(session=, keys=, candidates=, local_url=, on_url=) as link:`; its own task."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        keys: KeyPair,
        candidates: Callable[[], Awaitable[list[str]]],
        local_url: str,
        on_url: Callable[[str | None], None],
        rng: random.Random,
        retry_s: float = 2.0,
        local_session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.session = session
        self.local_session = local_session or session  # e.g. over the node's unix socket: a cheaper hop
        self.keys = keys
        self.candidates = candidates
        self.local_url = local_url.rstrip("/")
        self.on_url = on_url
        self.rng = rng
        self.retry_s = retry_s
        self.url: str | None = None
        self.relay: str | None = None
        self.connected = asyncio.Event()
        self.relays_used = 0
        self._tasks = TaskSet()
        self._requests = TaskSet()

    async def __aenter__(self) -> RelayLink:
        self._tasks.spawn(self._run(), name="relay-link")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._tasks.cancel()
        await self._requests.cancel()

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
            max_msg_size=wire.MAX_BODY_BYTES + 64 * 1024,
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
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY:
                    break
                request = codec.decode_as(wire.RelayRequest, message.data)
                self._requests.spawn(self._answer(ws, lock, request))

    async def _answer(
        self, ws: aiohttp.ClientWebSocketResponse, lock: asyncio.Lock, req: wire.RelayRequest
    ) -> None:
        try:
            async with self.local_session.request(
                req.method,
                self.local_url + req.path,
                data=req.body,
                # Marked, so the node tells a relayed stranger from its own host (GET /metrics).
                headers=[
                    *((k, v) for k, v in wire.pairs(req.headers) if k.lower() != RELAYED_HEADER.lower()),
                    (RELAYED_HEADER, "1"),
                ],
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=LOCAL_TIMEOUT_S),
            ) as response:
                answer = wire.RelayResponse(
                    stream=req.stream, status=response.status, headers=wire.flatten(response.headers),
                    body=await response.read(),
                )  # fmt: skip
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            answer = wire.RelayResponse(
                stream=req.stream, status=502, headers=(), body=str(exc)[:200].encode()
            )
        if len(answer.body) > wire.MAX_BODY_BYTES:
            answer = wire.RelayResponse(stream=req.stream, status=502, headers=(), body=b"answer too large")
        async with lock:
            if not ws.closed:
                await ws.send_bytes(codec.encode(answer))


def _error(stream: int, reason: str) -> wire.RelayResponse:
    body = codec.encode(ErrorReply(code="unreachable", reason=reason[:500]))
    return wire.RelayResponse(stream=stream, status=502, headers=("Content-Type", CONTENT_TYPE), body=body)
