"""The anchor's account messages (`p2pfaas.anchor.wire`): they round-trip, bound what a stranger may
send, and a key claim's signature binds the user and the anchor it names."""

from __future__ import annotations

import dataclasses

import pytest

from p2pfaas import codec, signing
from p2pfaas.anchor.wire import KeyClaim, LoginRequest, SignupRequest
from p2pfaas.errors import DecodeError, SignatureError
from p2pfaas.identity import KeyPair
from tests.wirekit import rewired


def test_a_signup_and_a_login_round_trip_and_their_sizes_are_bounded() -> None:
    signup = SignupRequest("alice", "correct horse", "lessee")
    assert codec.decode_as(SignupRequest, codec.encode(signup)) == signup
    login = LoginRequest("alice", "correct horse", ("ledger:read",), 0.0)
    assert codec.decode_as(LoginRequest, codec.encode(login)) == login
    for field, value in (("username", "a" * 65), ("password", "p" * 1025), ("role", "r" * 17)):
        with pytest.raises(DecodeError):
            codec.decode_as(SignupRequest, rewired(signup, field, value))
    with pytest.raises(DecodeError):
        codec.decode_as(LoginRequest, rewired(login, "scopes", ["s"] * 17))


def test_a_key_claim_is_signed_by_the_claimed_key_for_one_user_at_one_anchor() -> None:
    keys = KeyPair.from_seed(b"c" * 32)
    claim = signing.sign(KeyClaim("lessee", "alice", "http://anchor:8700", "laptop", 1.0, b"", b""), keys)
    decoded = codec.decode_as(KeyClaim, codec.encode(claim))
    assert signing.verify(decoded).key_id == keys.key_id
    for forged in (
        dataclasses.replace(decoded, username="mallory"),
        dataclasses.replace(decoded, audience="http://other:8700"),
    ):
        with pytest.raises(SignatureError):
            signing.verify(forged)
