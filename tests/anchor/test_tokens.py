"""Token format, stored hashes and the scope rules (sans-I/O)."""

from __future__ import annotations

import pytest

from p2pfaas.anchor.tokens import (
    ROLE_SCOPES,
    Role,
    Scope,
    TokenFormatError,
    decode_scopes,
    effective_scopes,
    encode_scopes,
    hash_token,
    mint_token,
    parse_scopes,
    role_scopes,
    token_id_of,
)


def test_minted_tokens_are_distinct_and_only_their_hash_is_kept() -> None:
    a, b = mint_token(), mint_token()
    assert a.secret_token != b.secret_token and a.token_id != b.token_id
    assert a.token_hash == hash_token(a.secret_token)
    assert a.secret_token not in a.token_hash
    assert token_id_of(a.secret_token) == a.token_id


@pytest.mark.parametrize("text", ["", "Bearer x", "p2pf_0123_abc", "p2pf_0123456789abcdef_" + "a" * 42])
def test_strings_that_are_not_tokens_are_refused(text: str) -> None:
    with pytest.raises(TokenFormatError):
        hash_token(text)


def test_scopes_round_trip_and_unknown_names_are_errors() -> None:
    scopes = parse_scopes(["credits:spend", "account:read"])
    assert decode_scopes(encode_scopes(scopes)) == scopes
    with pytest.raises(TokenFormatError):
        parse_scopes(["account:read", "root"])
    # A scope stored by a newer anchor is ignored, never granted.
    assert decode_scopes("account:read launch:missiles") == {Scope.ACCOUNT_READ}


def test_a_role_caps_what_its_tokens_can_do() -> None:
    everything = frozenset(Scope)
    assert effective_scopes("lessee", everything) == ROLE_SCOPES[Role.LESSEE]
    assert Scope.PAYOUT not in effective_scopes("lessee", everything)
    assert Scope.SPEND not in effective_scopes("volunteer", everything)
    assert Scope.OPERATOR not in effective_scopes("volunteer", everything)
    assert effective_scopes("operator", {Scope.OPERATOR}) == {Scope.OPERATOR}
    assert effective_scopes("pirate", everything) == frozenset()
    assert role_scopes("pirate") == frozenset()
