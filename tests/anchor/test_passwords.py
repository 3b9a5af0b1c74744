"""scrypt password hashes: they verify, they are salted, malformed ones never match, costs can rise."""

from __future__ import annotations

import pytest

from p2pfaas.anchor.passwords import PasswordHasher, WeakPassword, check_new_password

FAST = PasswordHasher(log2_n=10)


def test_a_hash_verifies_its_password_and_no_other() -> None:
    stored = FAST.hash_sync("correct horse battery")
    assert stored.startswith("scrypt$ln=10,r=8,p=1$")
    assert FAST.verify_sync("correct horse battery", stored)
    assert not FAST.verify_sync("correct horse batterz", stored)
    assert not FAST.verify_sync("", stored)


def test_hashes_are_salted() -> None:
    assert FAST.hash_sync("same password") != FAST.hash_sync("same password")


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "scrypt",
        "bcrypt$ln=10,r=8,p=1$AAAA$AAAA",
        "scrypt$ln=10,r=8,p=1$!!!$AAAA",
        "scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAA",  # key too short
        "scrypt$ln=40,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43,  # would ask for 2^40 * 1 KiB
        "scrypt$x=1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43,
    ],
)
def test_malformed_or_absurd_stored_hashes_never_match(stored: str) -> None:
    assert not FAST.verify_sync("anything at all", stored)


def test_a_stronger_hasher_asks_for_a_rehash_and_still_verifies_old_hashes() -> None:
    old = FAST.hash_sync("a long password")
    stronger = PasswordHasher(log2_n=11)
    assert stronger.needs_rehash(old)
    assert not FAST.needs_rehash(old)
    assert stronger.verify_sync("a long password", old)


def test_the_hasher_refuses_parameters_out_of_bounds() -> None:
    with pytest.raises(ValueError):
        PasswordHasher(log2_n=30)


async def test_async_verify_of_an_unknown_user_does_the_work_and_fails() -> None:
    assert not await FAST.verify("whatever password", None)
    stored = await FAST.hash("whatever password")
    assert await FAST.verify("whatever password", stored)


@pytest.mark.parametrize("password", ["short", "x" * 1025, "has\x00nul-inside", "Alice-1234"])
def test_weak_new_passwords_are_refused(password: str) -> None:
    with pytest.raises(WeakPassword):
        check_new_password(password, username="alice-1234")


def test_a_reasonable_password_passes() -> None:
    check_new_password("tr0ub4dor&3 but longer", username="alice")
