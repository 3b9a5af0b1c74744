"""Hole 7: a key claim must name this anchor's configured public URL; the `Host:` header is not asked.

A claim made for another anchor used to be accepted once the request carried that anchor's name in
`Host:`. Now the audience is compared with `AnchorSettings.public_url` (`anchor serve --public-url`,
default the http://HOST:PORT it binds), on SQLite and MariaDB.
"""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from p2pfaas import codec, signing
from p2pfaas.anchor.accounts_api import same_anchor, set_public_url
from p2pfaas.anchor.app import AnchorSettings, make_app
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.anchor.wire import KeyClaim
from p2pfaas.cli import anchor as anchor_cli
from p2pfaas.cli import build_parser
from p2pfaas.client.account import AccountClient
from p2pfaas.clock import wall_time
from p2pfaas.db import Database
from p2pfaas.errors import ConfigError
from p2pfaas.identity import KeyPair
from p2pfaas.rpc import CONTENT_TYPE
from tests.anchor.conftest import FAST_HASHER

PASSWORD = "correct horse battery staple"


def claim_for(audience: str, keys: KeyPair, username: str = "alice") -> KeyClaim:
    return signing.sign(KeyClaim("lessee", username, audience, "", wall_time(), b"", b""), keys)


async def post_claim(
    url: str, claim: KeyClaim, token_headers: dict[str, str], host: str | None = None
) -> int:
    headers = {**token_headers, "Content-Type": CONTENT_TYPE}
    if host is not None:
        headers["Host"] = host
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/accounts/me/keys", data=codec.encode(claim), headers=headers) as response,
    ):
        return response.status


async def test_a_forged_host_header_does_not_admit_a_claim_for_another_anchor(anchor: AnchorServer) -> None:
    keys = KeyPair.generate()
    assert anchor.public_url == anchor.url  # the default: the address it binds
    async with AccountClient(anchor.url) as alice:
        await alice.signup("alice", PASSWORD)
        elsewhere = claim_for("http://other-anchor.example:8700", keys)
        assert (
            await post_claim(anchor.url, elsewhere, alice.auth_headers(), host="other-anchor.example:8700")
            == 403
        )
        assert await post_claim(anchor.url, elsewhere, alice.auth_headers()) == 403
        assert (await alice.me()).keys == ()  # nothing was bound
        # The claim naming this anchor is accepted, whatever Host the request carries.
        here = claim_for(anchor.url + "/", keys)
        assert (
            await post_claim(anchor.url, here, alice.auth_headers(), host="other-anchor.example:8700") == 200
        )
        assert [k.key_id for k in (await alice.me()).keys] == [keys.key_id]


async def test_claims_are_checked_against_the_configured_public_url(db_url: str) -> None:
    settings = AnchorSettings(require_accounts=True, hasher=FAST_HASHER, public_url="https://Anchor.example/")
    keys = KeyPair.generate()
    async with AnchorServer(db_url, port=0, settings=settings) as anchor, AccountClient(anchor.url) as alice:
        assert anchor.public_url == "https://Anchor.example/"
        await alice.signup("alice", PASSWORD)
        # The address it listens on is not its public name, even with a matching Host header.
        listening = claim_for(anchor.url, keys)
        host = anchor.url.removeprefix("http://")
        assert await post_claim(anchor.url, listening, alice.auth_headers(), host=host) == 403
        assert (
            await post_claim(anchor.url, claim_for("https://anchor.example:443", keys), alice.auth_headers())
            == 200
        )


async def test_an_app_without_a_public_url_refuses_every_claim(db: Database) -> None:
    app = make_app(db, settings=AnchorSettings(hasher=FAST_HASHER))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        url = f"http://127.0.0.1:{port}"
        async with AccountClient(url) as alice:
            await alice.signup("alice", PASSWORD)
            assert await post_claim(url, claim_for(url, KeyPair.generate()), alice.auth_headers()) == 503
            set_public_url(app, url)
            assert await post_claim(url, claim_for(url, KeyPair.generate()), alice.auth_headers()) == 200
        with pytest.raises(ConfigError):
            set_public_url(app, "ftp://anchor.example")
    finally:
        await runner.cleanup()


def test_same_anchor_compares_scheme_host_port_and_path() -> None:
    mine = "http://127.0.0.1:8700"
    assert same_anchor("http://127.0.0.1:8700/", mine)
    assert same_anchor("HTTP://Anchor.Example", "http://anchor.example:80")
    assert same_anchor("https://a.example/p2p/", "https://a.example:443/p2p")
    for other in (
        "https://127.0.0.1:8700",
        "http://127.0.0.1:8701",
        "http://127.0.0.2:8700",
        "http://127.0.0.1:8700/other",
        "http://user@127.0.0.1:8700",
        "127.0.0.1:8700",
        "",
        "http://[::1",
    ):
        assert not same_anchor(other, mine), other
    assert not same_anchor(mine, "")


def test_anchor_serve_takes_a_public_url() -> None:
    args = build_parser().parse_args(["anchor", "serve", "--public-url", "https://anchor.example"])
    assert anchor_cli.anchor_settings(args).public_url == "https://anchor.example"
    args = build_parser().parse_args(["anchor", "serve"])
    assert anchor_cli.anchor_settings(args).public_url == ""  # then http://HOST:PORT as bound
