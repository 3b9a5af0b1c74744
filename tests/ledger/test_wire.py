"""The ledger's wire messages (`p2pfaas.ledger.wire`): amounts positive and bounded, when made and
when decoded. Every route's answer to an amount past the bound: tests/ledger/test_amount_bounds.py."""

from __future__ import annotations

import pytest

from p2pfaas import codec
from p2pfaas.errors import DecodeError
from p2pfaas.ledger.wire import GrantRequest, PayoutRequest, TopUpRequest, VoucherRequest
from p2pfaas.money import MAX_AMOUNT_MICRO
from tests.wirekit import rewired

REQUESTS = [
    GrantRequest("alice", 5, "g1", "welcome"),
    TopUpRequest("manual", "", 5, "bank-1"),
    VoucherRequest(b"k" * 32, 5, 60.0, "r1"),
    PayoutRequest("p1", 0, 5, "iban"),
]


@pytest.mark.parametrize("message", REQUESTS, ids=lambda m: type(m).__name__)
def test_an_amount_is_positive_and_bounded_on_the_wire(message: codec.Message) -> None:
    assert codec.decode(codec.encode(message)) == message
    field = "budget_micro" if isinstance(message, VoucherRequest) else "amount_micro"
    assert codec.decode(rewired(message, field, MAX_AMOUNT_MICRO)) is not None
    for amount in (0, -1, MAX_AMOUNT_MICRO + 1):
        with pytest.raises(DecodeError):
            codec.decode(rewired(message, field, amount))


def test_a_request_past_the_bound_is_refused_when_made() -> None:
    with pytest.raises(ValueError, match="amount_micro must be an integer within"):
        GrantRequest("alice", 0, "g", "")
    with pytest.raises(ValueError, match="amount_micro must be an integer within"):
        PayoutRequest("p1", 0, MAX_AMOUNT_MICRO + 1, "iban")
    with pytest.raises(ValueError, match="budget_micro must be an integer within"):
        VoucherRequest(b"k" * 32, -1, 60.0, "r1")
