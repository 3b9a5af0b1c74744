"""Wire messages (`p2pfaas.messages`): the checks each runs when it is made or decoded, and what a
request's hash covers."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest

from p2pfaas import codec, messages
from p2pfaas.errors import DecodeError
from p2pfaas.money import MAX_AMOUNT_MICRO


def test_a_spend_ticket_names_its_invocation_voucher_and_a_whole_hash() -> None:
    payee, cap = "ab" * 20, 100
    for fields in (
        ("", "v", b"h" * 32, payee, cap),
        ("i", "", b"h" * 32, payee, cap),
        ("i", "v", b"h" * 31, payee, cap),
        ("i", "v", b"h" * 32, "not a node id", cap),  # it names the node it pays
        ("i", "v", b"h" * 32, payee, -1),  # and a cap on the price, within the bounds of any amount
        ("i", "v", b"h" * 32, payee, MAX_AMOUNT_MICRO + 1),
    ):
        wire = [messages.SpendTicket.TAG, 1, *fields, b"k" * 32, b"s" * 64]
        with pytest.raises(DecodeError, match="invalid SpendTicket"):
            codec.decode(msgpack.packb(wire, use_bin_type=True))


def request(**change: Any) -> messages.InvokeRequest:
    base = messages.InvokeRequest("i", "ab" * 32, b"{}", 1.0, None, signer=b"", signature=b"")
    return dataclasses.replace(base, **change)  # replace runs the checks again, as decoding does


def test_an_invoke_request_checks_its_digest_id_and_timeout() -> None:
    request()
    for change, reason in (
        ({"digest": "AB" * 32}, "digest"),
        ({"digest": "ab" * 31}, "digest"),
        ({"invocation_id": ""}, "invocation id is empty"),
        ({"timeout_s": 0.0}, "outside"),
        ({"timeout_s": 3601.0}, "outside"),
    ):
        with pytest.raises(ValueError, match=reason):
            request(**change)


def test_a_requests_hash_covers_what_ran_and_not_who_asked_or_paid() -> None:
    base = messages.request_sha256(request())
    assert len(base) == 32
    assert messages.request_sha256(request(invocation_id="replica 2")) == base
    assert messages.request_sha256(request(signer=b"k" * 32)) == base
    assert messages.request_sha256(request(payload=b"[]")) != base
    assert messages.request_sha256(request(timeout_s=0.5)) != base
    assert messages.request_sha256(request(digest="cd" * 32)) != base
