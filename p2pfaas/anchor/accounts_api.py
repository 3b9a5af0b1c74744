"""The accounts routes: sign up, log in, tokens, who am I, and binding keys and nodes to accounts.

    POST   /v1/accounts            SignupRequest -> TokenIssued     (open: a new lessee or volunteer)
    POST   /v1/sessions            LoginRequest  -> TokenIssued     (password -> session token)
    GET    /v1/accounts/me                       -> AccountProfile  (account:read)
    POST   /v1/accounts/me/keys    KeyClaim      -> KeyInfo         (keys:write; signed by the key)
    GET    /v1/tokens                            -> TokenList       (account:read)
    POST   /v1/tokens              TokenRequest  -> TokenIssued     (tokens:write)
    DELETE /v1/tokens/{token_id}                 -> Ack             (tokens:write, or the token itself)

Every handler acts on the caller's own rows only: the user id comes from the token, never from
the request. A wrong password and an unknown user get the same answer after the same work, and
repeated failures lock the (username, address) pair out for longer each time (`throttle.py`, 429).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

from p2pfaas import signing
from p2pfaas.anchor import auth
from p2pfaas.anchor.accounts import AccountStore, KeyKind, UserRow, normalize_username
from p2pfaas.anchor.auth import Principal
from p2pfaas.anchor.passwords import PasswordHasher, WeakPassword, check_new_password
from p2pfaas.anchor.throttle import LoginThrottle, Throttle
from p2pfaas.anchor.tokens import (
    API_TOKEN_TTL_S,
    MAX_TOKEN_TTL_S,
    SESSION_TTL_S,
    Role,
    Scope,
    TokenFormatError,
    encode_scopes,
    mint_token,
    parse_scopes,
    role_scopes,
)
from p2pfaas.anchor.wire import (
    AccountProfile,
    KeyClaim,
    KeyInfo,
    LoginRequest,
    SignupRequest,
    TokenInfo,
    TokenIssued,
    TokenList,
    TokenRequest,
)
from p2pfaas.clock import wall_time
from p2pfaas.errors import ConfigError, Refused
from p2pfaas.messages import Ack
from p2pfaas.rpc import Forbidden, Unauthorized, read_message, reply

__all__ = ["AccountsApi", "add_routes"]

CLAIM_SKEW_S = 300.0  # a key claim must be this fresh (the claimant's clock against ours)
SIGNUPS_PER_HOUR = 20  # per client address; then each further one waits twice as long
MAX_SESSION_TTL_S = 30 * 24 * 3600.0
SIGNUP_ROLES = (Role.LESSEE, Role.VOLUNTEER)
ACCOUNTS_API: web.AppKey[AccountsApi] = web.AppKey("accounts_api")
_TOKEN_ID = re.compile(r"[0-9a-f]{16}")
# Which roles may bind which kind of key: lessees sign functions, volunteers run nodes.
_KEY_ROLES = {KeyKind.LESSEE: (Role.LESSEE, Role.OPERATOR), KeyKind.NODE: (Role.VOLUNTEER, Role.OPERATOR)}


@dataclass
class AccountsApi:
    """Handlers over an `AccountStore`; its only state is this process's login and sign-up throttles."""

    store: AccountStore
    hasher: PasswordHasher = field(default_factory=PasswordHasher)
    allow_signup: bool = True
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # The anchor's own public URL, from its configuration (`anchor serve --public-url`, else the
    # http://HOST:PORT it binds): the audience a key claim must name. Never the request's `Host:`
    # header, which the claimant writes. "" (an app not served by `AnchorServer` and not told by
    # `set_public_url`): every claim is refused.
    public_url: str = ""
    signups: Throttle = field(default_factory=lambda: Throttle(threshold=SIGNUPS_PER_HOUR, window_s=3600.0))

    async def signup(self, request: web.Request) -> web.Response:
        msg = await read_message(request, SignupRequest)
        if not self.allow_signup:
            raise Forbidden("this anchor does not take sign-ups; ask its operator for an account")
        if msg.role not in SIGNUP_ROLES:
            raise Refused(f"role must be one of {', '.join(SIGNUP_ROLES)}, got {msg.role[:16]!r}", status=400)
        username = normalize_username(msg.username)
        _check_password(msg.password, username)
        # Each sign-up costs a KDF run and a row: one address gets a few an hour, then waits.
        address, now = request.remote or "?", asyncio.get_running_loop().time()
        wait_s = self.signups.wait_s(address, now)
        if wait_s > 0:
            raise Refused(f"too many sign-ups from your address; try again in {wait_s:.0f} s", status=429)
        self.signups.failed(address, now)
        password_hash = await self.hasher.hash(msg.password)
        user = await self.store.create_user(
            username, password_hash=password_hash, role=msg.role, now=wall_time()
        )
        return reply(await self._issue(user, role_scopes(user.role), SESSION_TTL_S))

    async def login(self, request: web.Request) -> web.Response:
        msg = await read_message(request, LoginRequest)
        name, address = msg.username.strip().lower(), request.remote or "?"
        # Counted as a failure until it succeeds; refused before the KDF runs when locked out, so
        # guessing costs the guesser, not the anchor.
        wait_s = self.throttle.attempt(name, address, asyncio.get_running_loop().time())
        if wait_s > 0:
            raise Refused(f"too many failed logins; try again in {wait_s:.0f} s", status=429)
        user = await self.store.user_by_name(msg.username)
        # The same KDF work whether or not the user exists: timing does not tell which names are taken.
        ok = await self.hasher.verify(msg.password, None if user is None else user.password_hash)
        if user is None or not ok:
            raise Unauthorized("wrong username or password")
        self.throttle.succeeded(name, address)
        if self.hasher.needs_rehash(user.password_hash):
            await self.store.set_password_hash(user.user_id, await self.hasher.hash(msg.password))
        scopes = _subset(msg.scopes, role_scopes(user.role), of=f"a {user.role}'s")
        ttl = _ttl(msg.ttl_s, default=SESSION_TTL_S, limit=MAX_SESSION_TTL_S)
        return reply(await self._issue(user, scopes, ttl))

    async def me(self, request: web.Request) -> web.Response:
        caller = await auth.require(request, Scope.ACCOUNT_READ)
        keys = await self.store.keys_of(caller.user_id)
        return reply(
            AccountProfile(
                user_id=caller.user_id,
                username=caller.username,
                role=caller.role,
                account_id=caller.account_id,
                scopes=tuple(sorted(caller.scopes)),
                token_id=caller.token_id,
                keys=tuple(KeyInfo(k.key_id, k.kind, k.public_key, k.created_at) for k in keys),
            )
        )

    async def claim_key(self, request: web.Request) -> web.Response:
        caller = await auth.require(request, Scope.KEYS)
        claim = await read_message(request, KeyClaim)
        key = signing.verify(claim)  # proof of possession: the claimed key signed this claim
        if claim.kind not in _KEY_ROLES:
            raise Refused(f"kind must be 'lessee' or 'node', got {claim.kind[:16]!r}", status=400)
        if caller.role not in _KEY_ROLES[claim.kind]:
            raise Forbidden(f"a {caller.role} cannot claim a {claim.kind} key")
        if claim.username != caller.username:
            raise Forbidden("the claim names another account; sign a claim naming your own username")
        if not self.public_url:
            raise Refused("this anchor has no public URL configured; it cannot check key claims", status=503)
        if not same_anchor(claim.audience, self.public_url):
            raise Forbidden(
                f"the claim was made for anchor {claim.audience[:80]!r}, not this one ({self.public_url})"
            )
        now = wall_time()
        if abs(now - claim.issued_at) > CLAIM_SKEW_S:
            raise Refused(
                f"the claim is stale or from the future (more than {CLAIM_SKEW_S:.0f} s off)", status=400
            )
        key_id = await self.store.bind_key(
            caller.user_id, key.raw, kind=claim.kind, label=claim.label, now=now
        )
        return reply(KeyInfo(key_id=key_id, kind=claim.kind, public_key=key.raw, created_at=now))

    async def list_tokens(self, request: web.Request) -> web.Response:
        caller = await auth.require(request, Scope.ACCOUNT_READ)
        rows = await self.store.tokens_of(caller.user_id)
        return reply(
            TokenList(
                tokens=tuple(
                    TokenInfo(r.token_id, tuple(r.scopes.split()), r.created_at, r.expires_at, r.revoked_at)
                    for r in rows[:1024]
                )
            )
        )

    async def create_token(self, request: web.Request) -> web.Response:
        caller = await auth.require(request, Scope.TOKENS)
        msg = await read_message(request, TokenRequest)
        # A token can only hand on what it holds itself: no escalation through minting.
        scopes = _subset(msg.scopes, caller.scopes, of="this token's")
        user = await self.store.user_by_id(caller.user_id)
        assert user is not None  # the token was just found with its user
        return reply(
            await self._issue(user, scopes, _ttl(msg.ttl_s, default=API_TOKEN_TTL_S, limit=MAX_TOKEN_TTL_S))
        )

    async def revoke_token(self, request: web.Request) -> web.Response:
        caller = await auth.principal(request)
        token_id = request.match_info["token_id"]
        if not _TOKEN_ID.fullmatch(token_id):
            raise Refused("a token id is 16 hex digits", status=400)
        if token_id != caller.token_id and not caller.has(Scope.TOKENS):
            raise Forbidden(f"this token lacks the {Scope.TOKENS} scope; it can revoke only itself")
        await self.store.revoke_token(caller.user_id, token_id, now=wall_time())
        return reply(Ack(f"revoked {token_id}"))

    async def _issue(self, user: UserRow, scopes: frozenset[Scope], ttl_s: float) -> TokenIssued:
        minted = mint_token()
        now = wall_time()
        row = await self.store.add_token(
            user.user_id,
            token_id=minted.token_id,
            token_hash=minted.token_hash,
            scopes=encode_scopes(scopes),
            now=now,
            expires_at=now + ttl_s,
        )
        return TokenIssued(
            token=minted.secret_token,
            token_id=row.token_id,
            user_id=user.user_id,
            username=user.username,
            role=user.role,
            account_id=user.account_id,
            scopes=tuple(sorted(scopes)),
            expires_at=row.expires_at,
        )


def _check_password(password: str, username: str) -> None:
    try:
        check_new_password(password, username=username)
    except WeakPassword as error:
        raise Refused(str(error), status=400) from None


def _subset(names: tuple[str, ...], allowed: frozenset[Scope], *, of: str) -> frozenset[Scope]:
    """The scopes asked for (all of `allowed` if none), refused if any is beyond `allowed`."""
    try:
        wanted = parse_scopes(names) if names else allowed
    except TokenFormatError as error:
        raise Refused(str(error), status=400) from None
    beyond = wanted - allowed
    if beyond:
        raise Forbidden(f"{' '.join(sorted(beyond))} is beyond {of} scopes ({' '.join(sorted(allowed))})")
    if not wanted:
        raise Refused("a token needs at least one scope", status=400)
    return wanted


def _ttl(ttl_s: float, *, default: float, limit: float) -> float:
    if ttl_s == 0:
        return default
    if not 0 < ttl_s <= limit:
        raise Refused(f"ttl_s must be within (0, {limit:.0f}] seconds, or 0 for {default:.0f}", status=400)
    return float(ttl_s)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _anchor_identity(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of an anchor URL, normalised; None if it is not an http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    return scheme, host, port or _DEFAULT_PORTS[scheme], parts.path.rstrip("/")


def same_anchor(audience: str, public_url: str) -> bool:
    """Whether a claim's `audience` names the anchor at `public_url` (scheme, host, port and path;
    case, a default port and a trailing slash aside)."""
    mine = _anchor_identity(public_url)
    return mine is not None and _anchor_identity(audience) == mine


def set_public_url(app: web.Application, url: str) -> None:
    """Tell the accounts routes of `app` the anchor's public URL (claims' audience is checked against it)."""
    if _anchor_identity(url) is None:
        raise ConfigError(f"the anchor's public URL must be an http(s) URL, got {url!r}")
    app[ACCOUNTS_API].public_url = url


def add_routes(app: web.Application, api: AccountsApi) -> None:
    app[ACCOUNTS_API] = api
    app.add_routes(
        [
            web.post("/v1/accounts", api.signup),
            web.post("/v1/sessions", api.login),
            web.get("/v1/accounts/me", api.me),
            web.post("/v1/accounts/me/keys", api.claim_key),
            web.get("/v1/tokens", api.list_tokens),
            web.post("/v1/tokens", api.create_token),
            web.delete("/v1/tokens/{token_id}", api.revoke_token),
        ]
    )


def caller_owns(caller: Principal, user_id: int) -> bool:
    """Whether `caller` may read what belongs to `user_id`: their own, or any if an operator."""
    return caller.user_id == user_id or caller.is_operator
