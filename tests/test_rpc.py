"""`rpc.call`'s error mapping."""

from __future__ import annotations

import aiohttp
import pytest

from p2pfaas import rpc
from p2pfaas.errors import Unreachable
from p2pfaas.messages import Ack


async def test_a_closed_session_is_unreachable_not_an_internal_error() -> None:
    """Found by the lab scenario: a draining node forwarding its last calls after its session closed
    answered 500 (aiohttp's RuntimeError), and the lessee's call failed instead of moving on."""
    session = aiohttp.ClientSession()
    await session.close()
    with pytest.raises(Unreachable, match="closing its connections"):
        await rpc.call(session, "GET", "http://127.0.0.1:9/v1/status", Ack, timeout_s=1.0)
