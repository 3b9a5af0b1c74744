"""`rpc.call`'s error mapping."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from p2pfaas import rpc
from p2pfaas.errors import NotSent, Unreachable
from p2pfaas.messages import Ack


async def test_a_closed_session_is_unreachable_not_an_internal_error() -> None:
    """Found by the lab scenario: a draining node forwarding its last calls after its session closed
    answered 500 (aiohttp's RuntimeError), and the lessee's call failed instead of moving on."""
    session = aiohttp.ClientSession()
    await session.close()
    with pytest.raises(Unreachable, match="closing its connections"):
        await rpc.call(session, "GET", "http://127.0.0.1:9/v1/status", Ack, timeout_s=1.0)


async def test_a_refused_connection_is_not_sent_and_a_silent_peer_only_unreachable() -> None:
    """`NotSent` tells callers that nothing left this process (so a vote need not count it); a peer
    that took the request and went silent might have run it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(NotSent):
            await rpc.call(session, "GET", f"http://127.0.0.1:{port}/v1/status", Ack, timeout_s=5.0)
        taken: list[asyncio.StreamWriter] = []
        silent = await asyncio.start_server(lambda _, writer: taken.append(writer), "127.0.0.1", 0)
        try:
            port = silent.sockets[0].getsockname()[1]
            with pytest.raises(Unreachable) as raised:
                await rpc.call(session, "GET", f"http://127.0.0.1:{port}/v1/status", Ack, timeout_s=0.3)
            assert not isinstance(raised.value, NotSent)
        finally:
            for writer in taken:
                writer.close()
            silent.close()
            await silent.wait_closed()
