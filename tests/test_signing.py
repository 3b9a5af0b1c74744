"""Signing wire messages (`p2pfaas.signing`): the signature binds every field, and verifying names the
signer or raises."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from p2pfaas import codec, signing
from p2pfaas.errors import SignatureError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Voucher

ANCHOR, OTHER = KeyPair.from_seed(b"a" * 32), KeyPair.from_seed(b"b" * 32)


def unsigned() -> Voucher:
    return Voucher("v1", OTHER.public.raw, 1000, 1_700_000_600.0, signer=b"", signature=b"")


def test_a_signed_message_verifies_as_its_signer() -> None:
    voucher = signing.sign(unsigned(), ANCHOR)
    assert voucher.signer == ANCHOR.public.raw and len(voucher.signature) == 64
    assert signing.verify(voucher).raw == ANCHOR.public.raw
    assert signing.signing_bytes(voucher) == codec.encode(dataclasses.replace(voucher, signature=b""))
    decoded = codec.decode_as(Voucher, codec.encode(voucher))
    assert signing.verify(decoded).key_id == ANCHOR.key_id


@pytest.mark.parametrize(
    "change",
    [
        {"budget_micro": 1001},
        {"voucher_id": "v2"},
        {"expires_at": 1_700_000_601.0},
        {"signer": OTHER.public.raw},
        {"signature": bytes(64)},
    ],
)
def test_changing_any_field_after_signing_breaks_the_signature(change: dict[str, Any]) -> None:
    voucher = dataclasses.replace(signing.sign(unsigned(), ANCHOR), **change)
    with pytest.raises(SignatureError):
        signing.verify(voucher)
