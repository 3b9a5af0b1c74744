"""API tokens and scopes: what a bearer token looks like, how it is stored, what each role may do.

A token is `p2pf_<token id>_<secret>`: a public 16-hex-digit id (to list and revoke it by) and a
256-bit random secret. The anchor stores only the token's SHA-256: a database leak gives no usable
token, and since the secret is random and long, a fast hash is enough (no KDF needed, unlike a
password). Lookups go by that hash.

Scopes say what a token may do; a role says which scopes its tokens may ever hold, so a token's
effective scopes are the intersection (taking a scope from a role takes it from every token).

Sans-I/O: no database, no clock (expiry is decided by the caller with `now`).
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from p2pfaas.errors import LocalError

__all__ = [
    "ROLE_SCOPES",
    "Role",
    "Scope",
    "TokenFormatError",
    "hash_token",
    "mint_token",
    "parse_scopes",
    "role_scopes",
    "token_id_of",
]

TOKEN_PREFIX = "p2pf"
_TOKEN = re.compile(r"p2pf_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
SESSION_TTL_S = 24 * 3600.0  # a login's token
API_TOKEN_TTL_S = 90 * 24 * 3600.0  # an API token's life unless asked otherwise
MAX_TOKEN_TTL_S = 366 * 24 * 3600.0  # the longest an API token may live


class TokenFormatError(LocalError, ValueError):
    """A string is not a p2pfaas API token, or a scope list names an unknown scope."""


class Scope(enum.StrEnum):
    """What a token may do. Anchor handlers call `auth.require(request, Scope.X)`."""

    ACCOUNT_READ = "account:read"  # the caller's own profile, keys, tokens, balances, history
    TOKENS = "tokens:write"  # mint and revoke the caller's own tokens
    KEYS = "keys:write"  # bind lessee keys and claim nodes to the caller's account
    SPEND = "credits:spend"  # take spending vouchers out of the caller's balance
    TOPUP = "credits:topup"  # pay credits in through a payment provider
    PAYOUT = "payouts:write"  # ask for the caller's earnings to be paid out
    OPERATOR = "operator"  # grant credits, move payouts along, read any account


class Role(enum.StrEnum):
    LESSEE = "lessee"
    VOLUNTEER = "volunteer"
    OPERATOR = "operator"


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.LESSEE: frozenset({Scope.ACCOUNT_READ, Scope.TOKENS, Scope.KEYS, Scope.SPEND, Scope.TOPUP}),
    Role.VOLUNTEER: frozenset({Scope.ACCOUNT_READ, Scope.TOKENS, Scope.KEYS, Scope.PAYOUT}),
    Role.OPERATOR: frozenset(Scope),
}


@dataclass(frozen=True)
class MintedToken:
    """A new token: `secret_token` is shown to its owner once; only `token_hash` is stored."""

    secret_token: str
    token_id: str
    token_hash: str


def mint_token() -> MintedToken:
    """A fresh token from the operating system's CSPRNG (never from an injected `random.Random`)."""
    token_id = secrets.token_hex(8)
    token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    assert _TOKEN.fullmatch(token), token
    return MintedToken(token, token_id, hash_token(token))


def hash_token(token: str) -> str:
    """The stored form of `token`. Raises `TokenFormatError` for a string that is not a token."""
    if not _TOKEN.fullmatch(token):
        raise TokenFormatError("not a p2pfaas API token (expected p2pf_<id>_<secret>)")
    return hashlib.sha256(token.encode()).hexdigest()


def token_id_of(token: str) -> str:
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise TokenFormatError("not a p2pfaas API token (expected p2pf_<id>_<secret>)")
    return match.group(1)


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """Scopes from their names; an unknown name is an error, not silently dropped."""
    out: set[Scope] = set()
    for name in names:
        try:
            out.add(Scope(name))
        except ValueError:
            known = ", ".join(sorted(Scope))
            raise TokenFormatError(f"unknown scope {name[:40]!r}; known scopes: {known}") from None
    return frozenset(out)


def encode_scopes(scopes: Iterable[Scope]) -> str:
    """The stored form: space-separated, sorted (so equal sets store equally)."""
    return " ".join(sorted(str(scope) for scope in scopes))


def decode_scopes(stored: str) -> frozenset[Scope]:
    """Stored scopes; names this version does not know (a newer anchor's) are ignored, never granted."""
    known = {str(scope) for scope in Scope}
    return frozenset(Scope(name) for name in stored.split() if name in known)


def role_scopes(role: str) -> frozenset[Scope]:
    """Every scope a token of a user in `role` may hold (none for a role this version does not know)."""
    try:
        return ROLE_SCOPES[Role(role)]
    except ValueError:
        return frozenset()


def effective_scopes(role: str, token_scopes: Iterable[Scope]) -> frozenset[Scope]:
    """What a token of a user in `role` may actually do: its scopes, capped by the role's."""
    return frozenset(token_scopes) & role_scopes(role)
