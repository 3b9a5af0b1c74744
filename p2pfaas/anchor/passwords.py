"""Password hashing with scrypt, a memory-hard KDF (RFC 7914), from `cryptography`.

A stored hash is one self-describing string, `scrypt$ln=15,r=8,p=1$<salt>$<key>` (base64 without
padding), so the cost can be raised later: `needs_rehash` tells the login path to re-hash a
password stored under weaker parameters. The default, N=2^15, r=8, is about 32 MiB and ~50-100 ms
per guess on one core (OWASP's scrypt minimum is N=2^17 with r=8 at p=1 ~ 128 MiB; we pick a
smaller N because the anchor serves many logins on small machines and every guess still costs an
attacker 32 MiB of memory traffic; operators raise `log2_n`).

Verifying runs in a worker thread (it takes tens of milliseconds of CPU), at most
`max_concurrent` at a time, so a burst of logins cannot take the anchor's memory.
What this module does not do: rate-limit guesses or store anything.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import secrets
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from p2pfaas.clock import off_loop
from p2pfaas.errors import LocalError

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "PasswordHasher",
    "WeakPassword",
    "check_new_password",
]

T = TypeVar("T")

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024  # hashing cost does not depend on length, but a bound keeps bodies small
SALT_BYTES = 16
KEY_BYTES = 32
_PREFIX = "scrypt"


class WeakPassword(LocalError, ValueError):
    """A new password is too short, too long, or not text."""


def check_new_password(password: str, *, username: str = "") -> None:
    """Refuse a password at signup that is too short or too long, or that is the username."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise WeakPassword(f"a password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long")
    if "\x00" in password:
        raise WeakPassword("a password must not contain NUL characters")
    if username and password.casefold() == username.casefold():
        raise WeakPassword("a password must not be the username")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True)
class _Params:
    log2_n: int
    r: int
    p: int

    def encode(self) -> str:
        return f"ln={self.log2_n},r={self.r},p={self.p}"

    @classmethod
    def decode(cls, text: str) -> _Params:
        fields = dict(part.split("=", 1) for part in text.split(","))
        params = cls(int(fields["ln"]), int(fields["r"]), int(fields["p"]))
        # Bound what a stored (or corrupted) hash may ask of us: at most 2^20 * r<=16 (2 GiB would be silly).
        if not (10 <= params.log2_n <= 20 and 1 <= params.r <= 16 and 1 <= params.p <= 4):
            raise ValueError(f"scrypt parameters out of range: {text}")
        return params


@dataclass
class PasswordHasher:
    """Hashes and checks passwords; one per anchor. Tests pass a small `log2_n` to stay fast."""

    log2_n: int = 15
    r: int = 8
    p: int = 1
    max_concurrent: int = 4
    # One limit per event loop: a hasher may outlive a loop (tests, a restarted server).
    _slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        _Params.decode(self._params.encode())  # the same bounds as for stored hashes

    @property
    def _params(self) -> _Params:
        return _Params(self.log2_n, self.r, self.p)

    # --- synchronous core (CPU-bound: call from a thread) ----------------------------------------

    def hash_sync(self, password: str) -> str:
        salt = secrets.token_bytes(SALT_BYTES)
        key = _kdf(self._params, salt).derive(password.encode())
        return f"{_PREFIX}${self._params.encode()}${_b64(salt)}${_b64(key)}"

    def verify_sync(self, password: str, stored: str) -> bool:
        """Whether `password` matches `stored`. A malformed `stored` never matches (and never raises)."""
        try:
            prefix, params_text, salt_text, key_text = stored.split("$")
            if prefix != _PREFIX:
                return False
            params = _Params.decode(params_text)
            salt, expected = _unb64(salt_text), _unb64(key_text)
        except (ValueError, KeyError):
            return False
        if len(expected) != KEY_BYTES:
            return False
        try:
            _kdf(params, salt).verify(password.encode(), expected)  # constant-time comparison inside
        except InvalidKey:
            return False
        return True

    def needs_rehash(self, stored: str) -> bool:
        """Whether `stored` was made with parameters other than this hasher's."""
        parts = stored.split("$")
        return len(parts) != 4 or parts[0] != _PREFIX or parts[1] != self._params.encode()

    def dummy_verify_sync(self, password: str) -> bool:
        """Spend the time of one verification and fail: a login for an unknown user must not answer faster."""
        salt = b"\x00" * SALT_BYTES
        key = _kdf(self._params, salt).derive(password.encode())
        return hmac.compare_digest(key, b"\x01" * KEY_BYTES) and False

    # --- asyncio wrappers -----------------------------------------------------------------------

    async def hash(self, password: str) -> str:
        return await self._in_thread(self.hash_sync, password)

    async def verify(self, password: str, stored: str | None) -> bool:
        """Check `password` against `stored`; with `stored` None, take as long and answer False."""
        if stored is None:
            return await self._in_thread(self.dummy_verify_sync, password)
        return await self._in_thread(self.verify_sync, password, stored)

    async def _in_thread(self, fn: Callable[..., T], *args: str) -> T:
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.max_concurrent)
        async with slots:
            with off_loop():
                return await asyncio.to_thread(fn, *args)


def _kdf(params: _Params, salt: bytes) -> Scrypt:
    return Scrypt(salt=salt, length=KEY_BYTES, n=2**params.log2_n, r=params.r, p=params.p)
