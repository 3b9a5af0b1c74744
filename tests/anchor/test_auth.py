"""`auth.principal` / `auth.require` over real HTTP on 127.0.0.1, on SQLite and MariaDB.

A probe route guarded by `require(request, scope)` stands for every account route (the ledger's
included): it must answer 401 without a valid token, 403 without the scope, and otherwise see the
caller that the token belongs to, and nobody else.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from p2pfaas import codec
from p2pfaas.anchor import auth
from p2pfaas.anchor.accounts import AccountStore
from p2pfaas.anchor.app import AnchorSettings, make_app
from p2pfaas.anchor.tokens import Scope, encode_scopes, mint_token
from p2pfaas.client.account import AccountClient
from p2pfaas.db import Database
from p2pfaas.errors import Refused
from p2pfaas.messages import Ack, ErrorReply
from tests.anchor.conftest import FAST_HASHER

PASSWORD = "a long enough password"


async def probe(request: web.Request) -> web.Response:
    caller = await auth.require(request, request.match_info["scope"])
    detail = {"user_id": caller.user_id, "account_id": caller.account_id, "role": caller.role}
    return web.Response(body=codec.encode(Ack(json.dumps(detail))), content_type="application/x-msgpack")


@dataclass
class Live:
    url: str
    db: Database
    session: aiohttp.ClientSession

    async def get(self, path: str, token: str | None = None, header: str | None = None) -> tuple[int, bytes]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if header is not None:
            headers["Authorization"] = header
        async with self.session.get(f"{self.url}{path}", headers=headers) as response:
            return response.status, await response.read()


@pytest.fixture
async def live(db: Database) -> AsyncIterator[Live]:
    app = make_app(db, settings=AnchorSettings(hasher=FAST_HASHER))
    app.router.add_get("/probe/{scope}", probe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        async with aiohttp.ClientSession() as session:
            yield Live(f"http://127.0.0.1:{port}", db, session)
    finally:
        await runner.cleanup()


def error_of(body: bytes) -> ErrorReply:
    return codec.decode_as(ErrorReply, body)


async def test_no_token_malformed_header_or_unknown_token_is_401(live: Live) -> None:
    status, body = await live.get("/probe/account:read")
    assert status == 401 and error_of(body).code == "unauthorized"
    for header in ("Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer not-a-token"):
        status, body = await live.get("/probe/account:read", header=header)
        assert status == 401 and error_of(body).code == "unauthorized", header
    forged = mint_token().secret_token  # well-formed, never issued
    status, body = await live.get("/probe/account:read", token=forged)
    assert status == 401 and "invalid, revoked or expired" in error_of(body).reason


async def test_a_valid_token_names_its_own_user_and_account(live: Live) -> None:
    async with AccountClient(live.url) as alice, AccountClient(live.url) as bob:
        a = await alice.signup("alice", PASSWORD)
        b = await bob.signup("bob", PASSWORD, role="volunteer")
    status, body = await live.get("/probe/account:read", token=a.token)
    assert status == 200
    assert json.loads(codec.decode_as(Ack, body).detail) == {
        "user_id": a.user_id,
        "account_id": a.account_id,
        "role": "lessee",
    }
    status, body = await live.get("/probe/account:read", token=b.token)
    assert json.loads(codec.decode_as(Ack, body).detail)["user_id"] == b.user_id != a.user_id
    assert a.account_id != b.account_id


async def test_a_token_without_the_scope_is_403(live: Live) -> None:
    async with AccountClient(live.url) as alice, AccountClient(live.url) as bob:
        a = await alice.signup("alice", PASSWORD)
        b = await bob.signup("bob", PASSWORD, role="volunteer")
        narrow = await alice.create_token(scopes=("account:read",))
    status, body = await live.get("/probe/payouts:write", token=a.token)  # lessees do not get paid out
    assert status == 403 and error_of(body).code == "forbidden"
    status, _ = await live.get("/probe/credits:spend", token=b.token)  # volunteers do not spend
    assert status == 403
    status, _ = await live.get("/probe/credits:spend", token=a.token)
    assert status == 200
    status, body = await live.get("/probe/credits:spend", token=narrow.token)
    assert status == 403 and "credits:spend" in error_of(body).reason
    status, _ = await live.get("/probe/account:read", token=narrow.token)
    assert status == 200


async def test_stored_scopes_beyond_the_role_are_never_granted(live: Live) -> None:
    async with AccountClient(live.url) as alice:
        a = await alice.signup("alice", PASSWORD)
    # A token row that (by a bug or an edit) says "operator" still cannot act as one: the role caps it.
    minted = mint_token()
    now = 1e12 - 1  # far in the future, so not expired
    await AccountStore(live.db).add_token(
        a.user_id,
        token_id=minted.token_id,
        token_hash=minted.token_hash,
        scopes=encode_scopes(Scope),
        now=0.0,
        expires_at=now,
    )
    status, _ = await live.get("/probe/operator", token=minted.secret_token)
    assert status == 403


async def test_revoked_and_expired_tokens_are_401(live: Live) -> None:
    async with AccountClient(live.url) as alice:
        session = await alice.signup("alice", PASSWORD)
        spare = await alice.create_token(scopes=("account:read",))
        await alice.revoke(spare.token_id)
    status, _ = await live.get("/probe/account:read", token=spare.token)
    assert status == 401
    expired = mint_token()
    await AccountStore(live.db).add_token(
        session.user_id,
        token_id=expired.token_id,
        token_hash=expired.token_hash,
        scopes="account:read",
        now=1.0,
        expires_at=2.0,
    )
    status, _ = await live.get("/probe/account:read", token=expired.secret_token)
    assert status == 401
    status, _ = await live.get("/probe/account:read", token=session.token)
    assert status == 200


async def test_a_token_can_revoke_itself_without_the_tokens_scope(live: Live) -> None:
    async with AccountClient(live.url) as alice:
        await alice.signup("alice", PASSWORD)
        narrow = await alice.create_token(scopes=("account:read",))
        other = await alice.create_token(scopes=("account:read",))
    async with AccountClient(live.url, token=narrow.token) as limited:
        with pytest.raises(Refused) as refused:
            await limited.revoke(other.token_id)
        assert refused.value.status == 403
        await limited.revoke(narrow.token_id)
        with pytest.raises(Refused) as gone:
            await limited.me()
        assert gone.value.status == 401
