"""The accounts API end to end over 127.0.0.1, on SQLite and MariaDB: sign up, log in, tokens, claims,
and that one account can never see or touch another's."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiohttp
import pytest

from p2pfaas import codec, rpc, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.anchor.wire import KeyClaim, LoginRequest, SignupRequest, TokenIssued
from p2pfaas.client import AsyncClient
from p2pfaas.client.account import AccountClient
from p2pfaas.clock import wall_time
from p2pfaas.errors import NotFound, Refused, SignatureError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import ErrorReply
from tests.functions import write_function

PASSWORD = "a long enough password"


async def status_of(coro: object) -> int:
    try:
        await coro  # type: ignore[misc]
    except Refused as refused:
        return refused.status
    return 200


async def test_signup_then_login_gives_working_tokens(anchor: AnchorServer) -> None:
    async with AccountClient(anchor.url) as client:
        issued = await client.signup("Alice", PASSWORD)
        assert issued.username == "alice" and issued.role == "lessee"
        assert set(issued.scopes) == {
            "account:read",
            "tokens:write",
            "keys:write",
            "credits:spend",
            "credits:topup",
        }
        me = await client.me()
        assert (me.user_id, me.account_id, me.keys) == (issued.user_id, issued.account_id, ())
    async with AccountClient(anchor.url) as again:
        login = await again.login("ALICE", PASSWORD, scopes=("account:read",), ttl_s=60)
        assert login.user_id == issued.user_id and login.scopes == ("account:read",)
        assert login.expires_at <= wall_time() + 61
        assert (await again.me()).token_id == login.token_id


async def test_bad_signups_are_refused_with_reasons(anchor: AnchorServer) -> None:
    async with AccountClient(anchor.url) as client:
        await client.signup("alice", PASSWORD)
        assert await status_of(client.signup("alice", PASSWORD)) == 409  # taken
        assert await status_of(client.signup("ALICE", PASSWORD)) == 409  # names ignore case
        assert await status_of(client.signup("bob", "short")) == 400
        assert await status_of(client.signup("b", PASSWORD)) == 400
        assert await status_of(client.signup("bob", PASSWORD, role="operator")) == 400
        assert await status_of(client.signup("bob/../x", PASSWORD)) == 400


async def test_concurrent_signups_of_one_name_make_one_user(anchor: AnchorServer) -> None:
    async with AccountClient(anchor.url) as client:
        statuses = await asyncio.gather(*(status_of(client.signup("carol", PASSWORD)) for _ in range(6)))
    assert sorted(statuses) == [200] + [409] * 5


async def test_wrong_password_and_unknown_user_get_the_same_401(anchor: AnchorServer) -> None:
    async with AccountClient(anchor.url) as client:
        await client.signup("alice", PASSWORD)
    replies = []
    async with aiohttp.ClientSession() as session:
        for name, password in (("alice", "wrong password!!"), ("nobody", PASSWORD)):
            body = codec.encode(LoginRequest(name, password, (), 0.0))
            async with session.post(f"{anchor.url}/v1/sessions", data=body) as response:
                replies.append((response.status, codec.decode_as(ErrorReply, await response.read())))
    assert replies[0] == replies[1]
    assert replies[0][0] == 401 and replies[0][1].reason == "wrong username or password"


async def test_tokens_mint_only_what_they_hold_and_list_without_secrets(anchor: AnchorServer) -> None:
    async with AccountClient(anchor.url) as alice:
        await alice.signup("alice", PASSWORD)
        ci = await alice.create_token(scopes=("account:read", "credits:spend"), ttl_s=3600)
        assert await status_of(alice.create_token(scopes=("payouts:write",))) == 403  # not a lessee's
        assert await status_of(alice.create_token(scopes=("root",))) == 400
        assert await status_of(alice.create_token(ttl_s=-1)) == 400
        listing = await alice.tokens()
        assert {t.token_id for t in listing.tokens} >= {ci.token_id}
        assert all(len(t.token_id) == 16 for t in listing.tokens)
        assert ci.token not in codec.encode(listing).decode("latin-1")
    async with AccountClient(anchor.url, token=ci.token) as narrow:
        # This token lacks tokens:write: it cannot mint, so it cannot escalate to the session's scopes.
        assert await status_of(narrow.create_token(scopes=("account:read",))) == 403


async def test_one_account_cannot_see_or_revoke_anothers_tokens(anchor: AnchorServer) -> None:
    async with AccountClient(anchor.url) as alice, AccountClient(anchor.url) as mallory:
        a = await alice.signup("alice", PASSWORD)
        await mallory.signup("mallory", PASSWORD)
        mallory_sees = {t.token_id for t in (await mallory.tokens()).tokens}
        assert a.token_id not in mallory_sees
        with pytest.raises(NotFound) as refused:
            await mallory.revoke(a.token_id)
        with pytest.raises(NotFound) as made_up:
            await mallory.revoke("0123456789abcdef")
        assert str(refused.value).replace(a.token_id, "?") == str(made_up.value).replace(
            "0123456789abcdef", "?"
        )
        assert (await alice.me()).user_id == a.user_id  # still valid


async def test_a_lessee_claims_its_key_by_proof_and_deploys(anchor: AnchorServer, tmp_path: Path) -> None:
    keys = KeyPair.generate()
    function_dir = write_function(tmp_path, "echo")
    async with AsyncClient(anchor.url, keys) as lessee:
        # require_accounts: an unbound key may neither register itself nor deploy.
        with pytest.raises(Refused) as refused:
            await lessee.deploy(function_dir)
        assert refused.value.status == 403 and "bound to an account" in refused.value.reason
    async with AccountClient(anchor.url) as alice:
        await alice.signup("alice", PASSWORD)
        info = await alice.claim_key(keys, kind="lessee", label="laptop")
        assert info.key_id == keys.key_id
        assert [k.key_id for k in (await alice.me()).keys] == [keys.key_id]
        await alice.claim_key(keys, kind="lessee")  # again: no change
    async with AsyncClient(anchor.url, keys) as lessee:
        deployed = await lessee.deploy(function_dir)
        assert deployed.owner_key_id == keys.key_id


async def test_claims_cannot_be_replayed_forged_or_stolen(anchor: AnchorServer) -> None:
    keys = KeyPair.generate()
    async with AccountClient(anchor.url) as alice, AccountClient(anchor.url) as mallory:
        await alice.signup("alice", PASSWORD)
        await mallory.signup("mallory", PASSWORD)
        # Mallory replays a claim Alice's key signed for Alice: it names Alice, so it cannot bind to her.
        alices_claim = signing.sign(KeyClaim("lessee", "alice", anchor.url, "", wall_time(), b"", b""), keys)
        session = mallory._session
        assert session is not None
        replay = rpc.call(
            session,
            "POST",
            f"{anchor.url}/v1/accounts/me/keys",
            TokenIssued,
            alices_claim,
            timeout_s=10,
            headers=mallory.auth_headers(),
        )
        assert await status_of(replay) == 403
        # A claim signed by another key than the one it names fails its signature.
        forged = dataclasses.replace(alices_claim, username="mallory")
        with pytest.raises(Refused) as bad:
            await rpc.call(
                session,
                "POST",
                f"{anchor.url}/v1/accounts/me/keys",
                TokenIssued,
                forged,
                timeout_s=10,
                headers=mallory.auth_headers(),
            )
        assert bad.value.status == 403 and "bad-signature" in bad.value.reason
        # Stale claims and claims made for another anchor are refused.
        stale = signing.sign(KeyClaim("lessee", "alice", anchor.url, "", wall_time() - 3600, b"", b""), keys)
        elsewhere = signing.sign(
            KeyClaim("lessee", "alice", "http://evil:1", "", wall_time(), b"", b""), keys
        )
        for claim in (stale, elsewhere):
            sent = rpc.call(
                session,
                "POST",
                f"{anchor.url}/v1/accounts/me/keys",
                TokenIssued,
                claim,
                timeout_s=10,
                headers=alice.auth_headers(),
            )
            assert await status_of(sent) in (400, 403)
        # Alice binds her key; Mallory, holding the key too, cannot take it over.
        await alice.claim_key(keys, kind="lessee")
        assert await status_of(mallory.claim_key(keys, kind="lessee")) == 409


async def test_volunteers_claim_nodes_and_lessees_cannot(anchor: AnchorServer) -> None:
    node_keys = KeyPair.generate()
    async with AccountClient(anchor.url) as vera, AccountClient(anchor.url) as alice:
        await vera.signup("vera", PASSWORD, role="volunteer")
        await alice.signup("alice", PASSWORD)
        assert await status_of(alice.claim_key(node_keys, kind="node")) == 403
        assert await status_of(vera.claim_key(KeyPair.generate(), kind="lessee")) == 403
        info = await vera.claim_key(node_keys, kind="node", label="basement box")
        assert info.key_id == node_keys.key_id and info.kind == "node"
        assert [(k.key_id, k.kind) for k in (await vera.me()).keys] == [(node_keys.key_id, "node")]
        assert (await alice.me()).keys == ()


async def test_signup_can_be_closed(open_anchor: AnchorServer, tmp_path: Path) -> None:
    from p2pfaas.anchor.app import AnchorSettings
    from tests.anchor.conftest import FAST_HASHER

    settings = AnchorSettings(allow_signup=False, hasher=FAST_HASHER)
    async with (
        AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'closed.db'}", port=0, settings=settings) as closed,
        aiohttp.ClientSession() as session,
    ):
        body = codec.encode(SignupRequest("alice", PASSWORD, "lessee"))
        async with session.post(f"{closed.url}/v1/accounts", data=body) as response:
            assert response.status == 403


async def test_an_open_anchor_still_takes_unbound_keys(open_anchor: AnchorServer, tmp_path: Path) -> None:
    keys = KeyPair.generate()
    async with AsyncClient(open_anchor.url, keys) as lessee:
        info = await lessee.deploy(write_function(tmp_path, "echo"))
    assert info.owner_key_id == keys.key_id


async def test_malformed_bodies_get_400_not_500(anchor: AnchorServer) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/v1/accounts", "/v1/sessions"):
            async with session.post(f"{anchor.url}{path}", data=b"\x93\x01\x02") as response:
                assert response.status == 400
        async with AccountClient(anchor.url) as alice:
            await alice.signup("alice", PASSWORD)
            headers = alice.auth_headers()
        async with session.post(
            f"{anchor.url}/v1/accounts/me/keys", data=b"junk", headers=headers
        ) as response:
            assert response.status == 400
        async with session.delete(f"{anchor.url}/v1/tokens/zzz", headers=headers) as response:
            assert response.status == 400


def test_signature_error_is_what_a_forged_claim_raises() -> None:
    keys, other = KeyPair.generate(), KeyPair.generate()
    claim = signing.sign(KeyClaim("node", "vera", "http://a:1", "", 0.0, b"", b""), keys)
    with pytest.raises(SignatureError):
        signing.verify(dataclasses.replace(claim, signer=other.public.raw))


async def test_concurrent_claims_of_one_node_bind_it_once(anchor: AnchorServer) -> None:
    node_keys = KeyPair.generate()
    clients = [AccountClient(anchor.url) for _ in range(4)]
    for number, client in enumerate(clients):
        await client.__aenter__()
        await client.signup(f"vol{number}", PASSWORD, role="volunteer")
    try:
        statuses = await asyncio.gather(*(status_of(c.claim_key(node_keys, kind="node")) for c in clients))
        owners = [len((await c.me()).keys) for c in clients]
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)
    assert sorted(statuses) == [200, 409, 409, 409]
    assert sorted(owners) == [0, 0, 0, 1]


async def test_repeated_wrong_passwords_lock_the_guesser_out(anchor: AnchorServer) -> None:
    async with AccountClient(anchor.url) as alice:
        await alice.signup("alice", PASSWORD)
    async with AccountClient(anchor.url) as guesser:
        for attempt in range(5):
            assert await status_of(guesser.login("alice", f"guess number {attempt}")) == 401
        # Locked out now: even the right password is refused, before any password hashing.
        with pytest.raises(Refused) as locked:
            await guesser.login("alice", PASSWORD)
        assert locked.value.status == 429 and "too many failed logins" in locked.value.reason


async def test_one_address_cannot_sign_up_without_end(anchor: AnchorServer) -> None:
    from p2pfaas.anchor.accounts_api import SIGNUPS_PER_HOUR

    async with AccountClient(anchor.url) as client:
        for n in range(SIGNUPS_PER_HOUR):
            await client.signup(f"user{n}", PASSWORD)
        with pytest.raises(Refused) as refused:
            await client.signup("one-too-many", PASSWORD)
        assert refused.value.status == 429 and "sign-ups" in refused.value.reason


async def test_a_login_rehashes_a_password_stored_under_a_weaker_cost(tmp_path: Path) -> None:
    from p2pfaas.anchor.accounts import AccountStore
    from p2pfaas.anchor.app import AnchorSettings
    from p2pfaas.anchor.passwords import PasswordHasher
    from p2pfaas.db import open_database

    url = f"sqlite+aiosqlite:///{tmp_path / 'rehash.db'}"
    weak, strong = PasswordHasher(log2_n=10), PasswordHasher(log2_n=11)
    async with open_database(url) as db:
        await AccountStore(db).create_user(
            "alice", password_hash=weak.hash_sync(PASSWORD), role="lessee", now=0.0
        )
    async with AnchorServer(url, port=0, settings=AnchorSettings(hasher=strong)) as anchor:
        async with AccountClient(anchor.url) as alice:
            await alice.login("alice", PASSWORD)
        async with open_database(url) as db:
            user = await AccountStore(db).user_by_name("alice")
    assert user is not None and user.password_hash.startswith("scrypt$ln=11,")
    assert strong.verify_sync(PASSWORD, user.password_hash)


async def test_api_tokens_live_90_days_unless_asked_and_never_beyond_366(anchor: AnchorServer) -> None:
    async with AccountClient(anchor.url) as alice:
        await alice.signup("alice", PASSWORD)
        default = await alice.create_token(scopes=("account:read",))
        assert abs(default.expires_at - wall_time() - 90 * 86400) < 60
        assert await status_of(alice.create_token(ttl_s=367 * 86400)) == 400
