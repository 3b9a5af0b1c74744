"""Relay frames' headers (`p2pfaas.relay.wire`): only end-to-end headers travel, flat and bounded."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from p2pfaas import codec
from p2pfaas.errors import DecodeError
from p2pfaas.relay.wire import MAX_HEADERS, RelayRequest, flatten, pairs


def test_hop_by_hop_headers_stay_behind_and_repeated_ones_travel_in_order() -> None:
    headers = CIMultiDict(
        [
            ("Host", "relay.example"),
            ("Connection", "keep-alive"),
            ("Content-Length", "7"),
            ("Transfer-Encoding", "chunked"),
            ("X-Thing", "1"),
            ("Accept", "a"),
            ("Accept", "b"),
        ]
    )
    flat = flatten(headers)
    assert flat == ("X-Thing", "1", "Accept", "a", "Accept", "b")
    assert pairs(flat) == [("X-Thing", "1"), ("Accept", "a"), ("Accept", "b")]


def test_at_most_max_headers_are_kept() -> None:
    many = CIMultiDict([(f"X-{n}", str(n)) for n in range(MAX_HEADERS + 10)])
    flat = flatten(many)
    assert len(pairs(flat)) == MAX_HEADERS and pairs(flat)[-1] == (
        f"X-{MAX_HEADERS - 1}",
        str(MAX_HEADERS - 1),
    )


def test_a_request_frame_round_trips_and_a_long_header_list_is_refused() -> None:
    request = RelayRequest(7, "POST", "/v1/invoke?a=1", flatten(CIMultiDict([("X-T", "t")])), b"payload")
    assert codec.decode_as(RelayRequest, codec.encode(request)) == request
    too_many = RelayRequest(7, "GET", "/", tuple(f"h{n}" for n in range(2 * MAX_HEADERS + 2)), b"")
    with pytest.raises(DecodeError):
        codec.decode_as(RelayRequest, codec.encode(too_many))
