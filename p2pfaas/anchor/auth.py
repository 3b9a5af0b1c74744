"""Who is asking: the anchor's bearer-token authentication, for every handler that serves an account.

    caller = await auth.require(request, Scope.SPEND)   # 401 without a valid token, 403 without the scope
    ... touch only rows of caller.user_id / caller.account_id ...

`principal(request)` reads `Authorization: Bearer <token>`, looks the token's hash up (through the
`AccountStore` the app holds under `ACCOUNTS`) and returns a `Principal`; it is cached on the request.
A missing, malformed, unknown, revoked or expired token is HTTP 401 with an `ErrorReply`
(code "unauthorized"); a valid token without the scope is 403 (code "forbidden"). Unknown and
revoked tokens get the same answer, so a guess learns nothing.

Requests from nodes (announcements, receipt batches) and from lessee keys (bundles, invocations)
are authenticated by their Ed25519 signatures instead; `key_owners` maps such a key to its account.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from p2pfaas.anchor.accounts import AccountStore
from p2pfaas.anchor.tokens import Scope, TokenFormatError, decode_scopes, effective_scopes, hash_token
from p2pfaas.clock import wall_time
from p2pfaas.rpc import Forbidden, Unauthorized

__all__ = ["ACCOUNTS", "Principal", "Scope", "optional_principal", "principal", "require"]

ACCOUNTS = web.AppKey("p2pfaas.accounts", AccountStore)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a user, their ledger account, and what this token may do."""

    user_id: int
    username: str
    account_id: int
    role: str  # "lessee", "volunteer" or "operator" (tokens.Role)
    scopes: frozenset[Scope]
    token_id: str

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes

    @property
    def is_operator(self) -> bool:
        return Scope.OPERATOR in self.scopes


@dataclass(frozen=True)
class _Checked:
    """The answer for this request, so a handler may ask twice and the database is asked once."""

    caller: Principal | None


_CHECKED = web.RequestKey("p2pfaas.principal", _Checked)


def bearer_token(request: web.Request) -> str | None:
    """The token in `Authorization: Bearer ...`, or None if there is no Authorization header."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


async def optional_principal(request: web.Request) -> Principal | None:
    """The caller if the request carries a token (which must then be valid), else None."""
    if _CHECKED in request:
        return request[_CHECKED].caller
    token = bearer_token(request)
    if token is None:
        request[_CHECKED] = _Checked(None)
        return None
    try:
        token_hash = hash_token(token)
    except TokenFormatError:
        raise Unauthorized("invalid, revoked or expired API token") from None
    holder = await request.app[ACCOUNTS].holder(token_hash, now=wall_time())
    if holder is None:
        raise Unauthorized("invalid, revoked or expired API token")
    user, row = holder.user, holder.token
    caller = Principal(
        user_id=user.user_id,
        username=user.username,
        account_id=user.account_id,
        role=user.role,
        scopes=effective_scopes(user.role, decode_scopes(row.scopes)),
        token_id=row.token_id,
    )
    request[_CHECKED] = _Checked(caller)
    return caller


async def principal(request: web.Request) -> Principal:
    """The caller; HTTP 401 if the request has no valid token."""
    caller = await optional_principal(request)
    if caller is None:
        raise Unauthorized("this endpoint needs an API token: Authorization: Bearer <token>")
    return caller


async def require(request: web.Request, scope: Scope | str) -> Principal:
    """The caller, if their token holds `scope`; 401 without a valid token, 403 without the scope."""
    caller = await principal(request)
    if scope not in caller.scopes:
        raise Forbidden(
            f"this token lacks the {scope} scope (a {caller.role} token holds: "
            f"{' '.join(sorted(caller.scopes)) or 'nothing'})"
        )
    return caller
