"""The accounts API's wire messages (codec tags 70-79): signup, login, tokens, profile, key claims.

Passwords and tokens travel only inside these MessagePack bodies over the anchor's HTTP(S) API and
are never logged; every answer that carries a secret token shows it once (`TokenIssued`).
Checks that need the server (is the name free, may this role have that scope) are the handlers';
these classes only bound sizes. Routes: see `p2pfaas/anchor/accounts_api.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from p2pfaas.codec import MaxLen, Message, message
from p2pfaas.messages import PublicKeyBytes, SignatureBytes

Name = Annotated[str, MaxLen(64)]
Password = Annotated[str, MaxLen(1024)]
Scopes = Annotated[tuple[str, ...], MaxLen(16)]


@message(70)
@dataclass(frozen=True)
class SignupRequest(Message):
    """A new lessee or volunteer (operators are made with `p2pfaas account add-operator`)."""

    username: Name
    password: Password
    role: Annotated[str, MaxLen(16)]  # "lessee" or "volunteer"


@message(71)
@dataclass(frozen=True)
class LoginRequest(Message):
    """Trade a password for a session token; `scopes` empty means all the role's scopes."""

    username: Name
    password: Password
    scopes: Scopes
    ttl_s: float  # 0: the default session length


@message(72)
@dataclass(frozen=True)
class TokenRequest(Message):
    """Mint an API token for scripts and CI, with a subset of the caller's own scopes."""

    scopes: Scopes
    ttl_s: float  # 0: 90 days (at most 366)


@message(73)
@dataclass(frozen=True)
class TokenIssued(Message):
    """A new token. `token` is the secret, shown this once; the anchor keeps only its hash."""

    token: Annotated[str, MaxLen(128)]
    token_id: Annotated[str, MaxLen(16)]
    user_id: int
    username: Name
    role: Annotated[str, MaxLen(16)]
    account_id: int
    scopes: Scopes
    expires_at: float


@message(74)
@dataclass(frozen=True)
class TokenInfo(Message):
    """A token as its owner may see it later: never the secret."""

    token_id: Annotated[str, MaxLen(16)]
    scopes: Scopes
    created_at: float
    expires_at: float
    revoked_at: float | None


@message(75)
@dataclass(frozen=True)
class TokenList(Message):
    tokens: Annotated[tuple[TokenInfo, ...], MaxLen(1024)]


@message(76)
@dataclass(frozen=True)
class KeyInfo(Message):
    """A lessee key or node bound to the caller's account."""

    key_id: Annotated[str, MaxLen(40)]
    kind: Annotated[str, MaxLen(8)]  # "lessee" or "node"
    public_key: PublicKeyBytes
    created_at: float


@message(77)
@dataclass(frozen=True)
class AccountProfile(Message):
    """Who the caller is (`GET /v1/accounts/me`)."""

    user_id: int
    username: Name
    role: Annotated[str, MaxLen(16)]
    account_id: int
    scopes: Scopes
    token_id: Annotated[str, MaxLen(16)]
    keys: Annotated[tuple[KeyInfo, ...], MaxLen(4096)]


@message(78)
@dataclass(frozen=True)
class KeyClaim(Message):
    """Proof that the holder of `signer` binds it to the account `username` at anchor `audience`.

    Signed by the claimed key itself (a lessee key, or a node's key for a volunteer claiming the
    node). Naming the user and the anchor, with a fresh `issued_at`, means a claim seen once cannot
    be replayed to bind the key to someone else or at another anchor.
    """

    kind: Annotated[str, MaxLen(8)]  # "lessee" or "node"
    username: Name
    audience: Annotated[str, MaxLen(256)]  # the anchor's URL as the claimant knows it
    label: Annotated[str, MaxLen(128)]
    issued_at: float
    signer: PublicKeyBytes
    signature: SignatureBytes
