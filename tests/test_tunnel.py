"""`p2pfaas.tunnel`, the caller's side of a relay: which URLs are relayed, where their requests go,
and a session that cannot tunnel says so instead of trying a name no resolver answers."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from p2pfaas import rpc, tunnel
from p2pfaas.errors import NotSent, Unreachable
from tests.relay.conftest import serve

NODE, RELAY_ID = "b" * 40, "c" * 40


def test_relayed_urls_are_told_from_direct_ones_over_tls_too() -> None:
    assert tunnel.is_relayed(f"http://192.0.2.11:8700{tunnel.relay_path(NODE)}")
    assert tunnel.is_relayed(f"https://192.0.2.12:8800/n/{RELAY_ID}{tunnel.relay_path(NODE)}")
    assert not tunnel.is_relayed(f"https://192.0.2.12:8800/n/{RELAY_ID}")  # a direct TLS node (can relay)
    assert not tunnel.is_relayed("http://192.0.2.13:8800")


def test_a_relayed_url_routes_to_a_tunnel_pinned_to_the_node_and_others_go_as_they_are() -> None:
    relay = f"https://192.0.2.12:8800/n/{RELAY_ID}"
    target, via = tunnel.route(f"{relay}{tunnel.relay_path(NODE)}/v1/invoke?x=1")
    assert target == f"https://{NODE}.tunnel.invalid/n/{NODE}/v1/invoke?x=1" and via == relay
    assert tunnel.route(f"{relay}/v1/invoke") == (f"{relay}/v1/invoke", None)
    assert tunnel.route(f"http://192.0.2.11:8700{tunnel.relay_path(NODE)}")[1] == "http://192.0.2.11:8700"


async def test_a_session_that_cannot_tunnel_is_told_so() -> None:
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(Unreachable, match="cannot tunnel"):
            await rpc.request_bytes(plain, "GET", f"http://192.0.2.11:8700{tunnel.relay_path(NODE)}/v1/status",
                                    timeout_s=1)  # fmt: skip


async def test_a_tunnel_url_without_a_relay_to_go_through_is_refused_by_the_connector() -> None:
    async with tunnel.session() as session:
        with pytest.raises(aiohttp.ClientConnectionError, match="not a tunnel"):
            async with session.get(f"https://{NODE}{tunnel.TUNNEL_HOST}/v1/status"):
                pass


async def test_a_relay_that_drops_the_tunnel_before_tls_is_up_sent_nothing() -> None:
    """Found by review: this was a plain Unreachable, so a hostile relay could spend a vote's cap."""

    async def drop(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    app = web.Application()
    app.add_routes([web.get(tunnel.tunnel_path(NODE), drop)])
    async with serve(app) as relay_url, tunnel.session() as session:
        with pytest.raises(NotSent, match="no TLS"):
            await rpc.request_bytes(
                session, "POST", f"{relay_url}{tunnel.relay_path(NODE)}/v1/invoke", b"x", timeout_s=5
            )
