"""How others reach a node (`p2pfaas.node.reachability`): the URL it announces without asking, when
it serves TLS, where this machine reaches it, and the address an anchor says it sees."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from p2pfaas import codec
from p2pfaas.messages import Observed
from p2pfaas.node.reachability import (
    base_url,
    bound_port,
    fixed_url,
    guess_url,
    is_loopback,
    local_address_towards,
    observed_address,
    tls_enabled,
)
from p2pfaas.rpc import CONTENT_TYPE

NODE_ID = "ab" * 20


def test_a_configured_url_or_loopback_is_announced_as_it_is_and_otherwise_learned() -> None:
    assert fixed_url("https://node.example/", "0.0.0.0", 8800, tls_id=None) == "https://node.example"
    assert fixed_url("", "127.0.0.1", 8800, tls_id=None) == "http://127.0.0.1:8800"
    assert fixed_url("", "::1", 8800, tls_id=NODE_ID) == f"https://[::1]:8800/n/{NODE_ID}"
    assert fixed_url("", "0.0.0.0", 8800, tls_id=None) is None
    assert base_url("192.0.2.1", 8800, tls_id=NODE_ID) == f"https://192.0.2.1:8800/n/{NODE_ID}"


def test_tls_is_on_everywhere_but_loopback_unless_told() -> None:
    assert tls_enabled("auto", "0.0.0.0") and not tls_enabled("auto", "127.0.0.1")
    assert tls_enabled("on", "localhost") and not tls_enabled("off", "192.0.2.1")
    assert is_loopback("localhost") and is_loopback("::1") and not is_loopback("node.example")


def test_the_fallback_address_towards_loopback_is_loopback() -> None:
    assert local_address_towards("http://127.0.0.1:9") == "127.0.0.1"


@pytest.fixture
async def anchor() -> AsyncIterator[str]:
    """An anchor stand-in whose /v1/whoami answers one address."""

    async def whoami(request: web.Request) -> web.Response:
        return web.Response(body=codec.encode(Observed("2001:db8::7")), content_type=CONTENT_TYPE)

    app = web.Application()
    app.router.add_get("/v1/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_the_observed_address_is_what_the_anchor_says_if_it_is_an_address(anchor: str) -> None:
    async with aiohttp.ClientSession() as session:
        assert await observed_address(session, anchor) == "2001:db8::7"


async def test_the_guessed_url_is_what_the_anchor_sees_else_the_bound_host(anchor: str) -> None:
    async with aiohttp.ClientSession() as session:
        assert await guess_url(session, anchor, "0.0.0.0", 8800, tls_id=None) == "http://[2001:db8::7]:8800"
        gone = "http://127.0.0.1:9"  # nothing answers: the bound host, else the way towards the anchor
        assert await guess_url(session, gone, "192.0.2.7", 8800, tls_id=None) == "http://192.0.2.7:8800"
        assert await guess_url(session, gone, "0.0.0.0", 8800, tls_id=None) == "http://127.0.0.1:8800"


async def test_the_bound_port_is_the_one_the_os_chose() -> None:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    try:
        assert bound_port(runner, 0) == 0  # nothing bound yet: what was asked
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = bound_port(runner, 0)
        assert port > 0 and port == runner.addresses[0][1]
    finally:
        await runner.cleanup()
