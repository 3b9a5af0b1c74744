"""`AccountClient` (p2pfaas/client/account.py) against a real anchor on 127.0.0.1 (the CLI's account
commands: tests/cli/test_account.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfaas import signing
from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client.account import AccountClient
from p2pfaas.errors import Refused
from p2pfaas.identity import KeyPair
from tests.anchor.conftest import FAST_HASHER

PASSWORD = "a long enough password"


async def test_the_account_client_speaks_the_ledger_for_its_caller(tmp_path: Path) -> None:
    settings = AnchorSettings(hasher=FAST_HASHER)
    async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0, settings=settings) as anchor:
        from p2pfaas.anchor.accounts import AccountStore
        from p2pfaas.anchor.passwords import PasswordHasher
        from p2pfaas.db import open_database

        async with open_database(anchor.db_url) as db:
            await AccountStore(db).create_user(
                "root", password_hash=PasswordHasher(log2_n=10).hash_sync(PASSWORD), role="operator", now=0.0
            )
        keys = KeyPair.generate()
        async with AccountClient(anchor.url) as alice, AccountClient(anchor.url) as root:
            await alice.signup("alice", PASSWORD)
            await root.login("root", PASSWORD)
            await alice.claim_key(keys, kind="lessee")
            with pytest.raises(Refused) as poor:
                await alice.voucher(keys, budget_micro=1_000, ttl_s=60, request_id="r1")
            assert poor.value.status == 402  # nothing to spend yet
            await root.grant("alice", 5_000, ref="g1")
            voucher = await alice.voucher(keys, budget_micro=1_000, ttl_s=60, request_id="r1")
            assert voucher.lessee_key == keys.public.raw and signing.verify(voucher)
            balances = {b.kind: b.balance_micro for b in (await alice.balances()).accounts}
            assert balances["lessee"] == 4_000
            with pytest.raises(Refused):  # lessees hold no payout scope
                await alice.request_payout("p", amount_micro=1, destination="x")
