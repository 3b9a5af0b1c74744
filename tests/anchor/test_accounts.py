"""The accounts store (`p2pfaas.anchor.accounts`) on SQLite and MariaDB: users with a ledger account
each, tokens valid until revoked or expired, and keys bound to one account for good."""

from __future__ import annotations

import pytest

from p2pfaas.anchor.accounts import AccountStore, KeyKind, normalize_username, user_account_name
from p2pfaas.db import Database
from p2pfaas.errors import Refused
from p2pfaas.identity import KeyPair

T0 = 1_700_000_000.0


def test_usernames_compare_case_insensitively_and_are_checked() -> None:
    assert normalize_username("  Alice.B_1 ") == "alice.b_1"
    for bad in ("ab", "-alice", "a" * 65, "al ice", "ålice"):
        with pytest.raises(Refused) as refused:
            normalize_username(bad)
        assert refused.value.status == 400
    assert user_account_name(7) == "user:7"


async def test_a_user_is_made_once_with_its_own_account(db: Database) -> None:
    store = AccountStore(db)
    alice = await store.create_user("Alice", password_hash="h1", role="lessee", now=T0)
    assert (alice.username, alice.role, alice.password_hash) == ("alice", "lessee", "h1")
    with pytest.raises(Refused, match="is taken") as taken:
        await store.create_user("ALICE", password_hash="h2", role="lessee", now=T0)
    assert taken.value.status == 409
    bob = await store.create_user("bob", password_hash="h", role="volunteer", now=T0)
    assert bob.account_id != alice.account_id
    assert await store.user_by_name("alice") == alice == await store.user_by_id(alice.user_id)
    assert await store.user_by_name("carol") is None
    await store.set_password_hash(alice.user_id, "h3")
    found = await store.user_by_id(alice.user_id)
    assert found is not None and found.password_hash == "h3"


async def test_a_token_holds_until_it_is_revoked_or_expires(db: Database) -> None:
    store = AccountStore(db)
    alice = await store.create_user("alice", password_hash="h", role="lessee", now=T0)
    await store.add_token(
        alice.user_id, token_id="t1", token_hash="x1", scopes="a b", now=T0, expires_at=T0 + 60
    )
    await store.add_token(
        alice.user_id, token_id="t1", token_hash="x1", scopes="a b", now=T0, expires_at=T0 + 60
    )
    holder = await store.holder("x1", now=T0 + 1)
    assert holder is not None and holder.user.user_id == alice.user_id and holder.token.scopes == "a b"
    assert await store.holder("x1", now=T0 + 61) is None  # expired
    assert await store.holder("nope", now=T0) is None
    assert [t.token_id for t in await store.tokens_of(alice.user_id)] == ["t1"]
    await store.revoke_token(alice.user_id, "t1", now=T0 + 2)
    assert await store.holder("x1", now=T0 + 3) is None


async def test_a_key_is_bound_to_one_account_for_good(db: Database) -> None:
    store = AccountStore(db)
    alice = await store.create_user("alice", password_hash="h", role="lessee", now=T0)
    bob = await store.create_user("bob", password_hash="h", role="volunteer", now=T0)
    keys = KeyPair.from_seed(b"k" * 32)
    key_id = await store.bind_key(alice.user_id, keys.public.raw, kind=KeyKind.LESSEE, label="laptop", now=T0)
    assert key_id == keys.key_id
    assert await store.key_owner(key_id) == (alice.user_id, KeyKind.LESSEE)
    assert [k.key_id for k in await store.keys_of(alice.user_id)] == [key_id]
    with pytest.raises(Refused, match="already bound") as bound:
        await store.bind_key(bob.user_id, keys.public.raw, kind=KeyKind.NODE, label="", now=T0)
    assert bound.value.status == 409
    with pytest.raises(Refused, match="key kind must be one of"):
        await store.bind_key(bob.user_id, keys.public.raw, kind="admin", label="", now=T0)
    assert await store.key_owner("ab" * 20) is None
