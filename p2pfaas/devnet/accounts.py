"""Paying on a devnet: an operator, a demo lessee with granted credits, and a wallet of vouchers.

`devnet_wallet(anchor_url, directory, keys)` makes `p2pfaas devnet demo` pay like a real lessee:
it creates the devnet's operator in the anchor's embedded SQLite database (the devnet owns it),
signs the demo lessee up (or logs it in), binds the demo key to it, has the operator grant it
credits once per key, and yields a `Wallet` that buys vouchers through the anchor's API. The
password is random, kept in the devnet directory readable by its owner only.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from p2pfaas.anchor.accounts import AccountStore
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.client.account import AccountClient
from p2pfaas.client.wallet import Wallet
from p2pfaas.clock import wall_time
from p2pfaas.db import open_database
from p2pfaas.errors import Refused
from p2pfaas.identity import KeyPair

__all__ = ["DEMO_GRANT_MICRO", "DEMO_LESSEE", "devnet_wallet"]

OPERATOR = "devnet-operator"
DEMO_LESSEE = "demo-lessee"
DEMO_GRANT_MICRO = 100_000_000  # 100 credits
DEMO_VOUCHER_MICRO = 10_000_000  # 10 credits a voucher


def _password(directory: Path) -> str:
    path = directory / "accounts.password"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


@asynccontextmanager
async def devnet_wallet(anchor_url: str, directory: Path, keys: KeyPair) -> AsyncIterator[Wallet]:
    """A funded wallet for `keys` on the devnet whose state (and `anchor.db`) is in `directory`."""
    password = _password(directory)
    async with open_database(f"sqlite+aiosqlite:///{(directory / 'anchor.db').resolve()}") as db:
        store = AccountStore(db)
        if await store.user_by_name(OPERATOR) is None:
            stored = await PasswordHasher().hash(password)
            try:
                await store.create_user(OPERATOR, password_hash=stored, role="operator", now=wall_time())
            except Refused as error:  # another lessee of this devnet created it meanwhile
                if error.status != 409:
                    raise
    async with AccountClient(anchor_url) as operator, AccountClient(anchor_url) as lessee:
        await operator.login(OPERATOR, password)
        try:
            await lessee.signup(DEMO_LESSEE, password, role="lessee")
        except Refused as error:
            if error.status != 409:
                raise
            await lessee.login(DEMO_LESSEE, password)
        await lessee.claim_key(keys, kind="lessee")
        grant_ref = f"devnet-demo:{keys.key_id}"  # once per key, however often the demo runs
        await operator.grant(DEMO_LESSEE, DEMO_GRANT_MICRO, ref=grant_ref, memo="devnet demo")
        yield Wallet(keys, lessee.voucher, budget_micro=DEMO_VOUCHER_MICRO, ttl_s=3600.0)
