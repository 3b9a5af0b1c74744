"""The client's address behind a reverse proxy (p2pfaas/anchor/forwarded.py): X-Forwarded-For is
believed from trusted proxies only, and read from the right; a live anchor echoes the client's address,
not the proxy's."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from p2pfaas import codec
from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.forwarded import client_address, parse_proxies
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.messages import Observed

PROXIES = parse_proxies(["192.0.2.0/28", "::1/128"])


def test_only_a_trusted_peer_may_say_who_the_client_is() -> None:
    assert client_address("192.0.2.5", ["198.51.100.7"], PROXIES) == "198.51.100.7"
    assert client_address("203.0.113.9", ["198.51.100.7"], PROXIES) == "203.0.113.9"  # a client's own header
    assert client_address("192.0.2.5", [], PROXIES) == "192.0.2.5"  # the proxy's health check


def test_the_rightmost_untrusted_hop_is_the_client_whatever_it_wrote_itself() -> None:
    # The client sent "X-Forwarded-For: 10.9.9.9" to the first proxy, which appended what it saw.
    assert client_address("192.0.2.5", ["10.9.9.9, 198.51.100.7, 192.0.2.3"], PROXIES) == "198.51.100.7"
    assert client_address("192.0.2.5", ["10.9.9.9", "198.51.100.7"], PROXIES) == "198.51.100.7"
    assert client_address("192.0.2.5", ["192.0.2.3, 192.0.2.4"], PROXIES) == "192.0.2.5"  # proxies only
    assert client_address("192.0.2.5", ["not-an-address"], PROXIES) == "192.0.2.5"  # junk: the proxy's
    assert client_address("::1", ["2001:db8::7"], PROXIES) == "2001:db8::7"


def test_a_bad_range_is_named() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.300"):
        parse_proxies(["10.0.0.300/8"])


@pytest.mark.parametrize("trusted", [True, False])
async def test_an_anchor_behind_a_trusted_proxy_echoes_the_client(tmp_path: Path, trusted: bool) -> None:
    settings = AnchorSettings(
        hasher=PasswordHasher(log2_n=10),
        trusted_proxies=parse_proxies(["127.0.0.0/8"]) if trusted else (),
    )
    db = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    async with AnchorServer(db, port=0, settings=settings) as anchor, aiohttp.ClientSession() as session:
        headers = {"X-Forwarded-For": "198.51.100.7"}  # as a proxy on loopback would send it
        async with session.get(f"{anchor.url}/v1/whoami", headers=headers) as r:
            seen = codec.decode_as(Observed, await r.read()).address
    assert seen == ("198.51.100.7" if trusted else "127.0.0.1")
