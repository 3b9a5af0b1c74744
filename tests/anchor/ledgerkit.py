"""A real anchor app with the ledger's routes on 127.0.0.1, its users (an operator, two lessees, a
volunteer) with their tokens, and calls made as one of them. Its `anchor` fixture takes the `db`
fixture of the test that asks for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import web

from p2pfaas.anchor import ledger_api
from p2pfaas.anchor.accounts import AccountStore
from p2pfaas.anchor.auth import ACCOUNTS
from p2pfaas.anchor.tokens import encode_scopes, mint_token, role_scopes
from p2pfaas.codec import Message
from p2pfaas.db import Database
from p2pfaas.ledger.policy import FeePolicy
from p2pfaas.rpc import call, error_middleware
from tests.ledger.conftest import T0

R = TypeVar("R", bound=Message)


@dataclass
class Anchor:
    url: str
    session: aiohttp.ClientSession
    accounts: AccountStore
    tokens: dict[str, str]  # username -> bearer token
    user_ids: dict[str, int]
    api: ledger_api.LedgerApi

    async def call(
        self,
        method: str,
        path: str,
        expect: type[R],
        msg: Message | None = None,
        *,
        as_user: str | None = None,
    ) -> R:
        headers = {"Authorization": f"Bearer {self.tokens[as_user]}"} if as_user else None
        return await call(self.session, method, self.url + path, expect, msg, timeout_s=10, headers=headers)

    async def user(self, name: str, role: str) -> None:
        row = await self.accounts.create_user(name, password_hash="unused", role=role, now=T0)
        minted = mint_token()
        await self.accounts.add_token(
            row.user_id,
            token_id=minted.token_id,
            token_hash=minted.token_hash,
            scopes=encode_scopes(role_scopes(role)),
            now=T0,
            expires_at=T0 + 10**9,
        )
        self.tokens[name], self.user_ids[name] = minted.secret_token, row.user_id


@pytest.fixture
async def anchor(db: Database) -> AsyncIterator[Anchor]:
    app = web.Application(middlewares=[error_middleware])
    app[ACCOUNTS] = AccountStore(db)
    # Earnings payable at once here; their maturity is tested in tests/hostile/test_money.py.
    api = ledger_api.setup(app, db, fees=FeePolicy(fee_ppm=100_000), mature_after_s=0.0)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        async with aiohttp.ClientSession() as session:
            a = Anchor(f"http://127.0.0.1:{port}", session, app[ACCOUNTS], {}, {}, api)
            await a.user("root", "operator")
            await a.user("alice", "lessee")
            await a.user("mallory", "lessee")
            await a.user("bob", "volunteer")
            yield a
    finally:
        await runner.cleanup()
