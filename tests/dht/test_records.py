"""Signed records: a relay cannot alter them, adverts sit only under their runtimes' keys, size bounds."""

from __future__ import annotations

import dataclasses

import pytest

from p2pfaas import codec
from p2pfaas.dht.records import advert_key, check_record, make_record, provider_key, publisher_of
from p2pfaas.dht.wire import MAX_DATAGRAM_BYTES, MAX_RECORD_BYTES, Capacity
from p2pfaas.errors import DecodeError, SignatureError
from p2pfaas.identity import KeyPair

KEYS = KeyPair.from_seed(b"node")


def _capacity(runtimes: tuple[str, ...] = ("python3.11",)) -> Capacity:
    return Capacity(runtimes, 4, 8192, 3, 10, 20, 0.25, (0.01, 0.02, 0.001), 0.3, False)


def test_an_advert_round_trips_and_names_its_publisher() -> None:
    record = make_record(
        KEYS,
        key=advert_key("python3.11"),
        seq=1,
        expires_at=2e9,
        host="10.0.0.1",
        port=8000,
        capacity=_capacity(),
    )
    check_record(record)
    assert publisher_of(record) == KEYS.node_id
    assert codec.decode(codec.encode(record)) == record


def test_a_tampered_record_fails_its_signature() -> None:
    record = make_record(KEYS, key=provider_key(b"d" * 32), seq=1, expires_at=2e9, host="10.0.0.1", port=8000)
    for change in (
        {"port": 9999},
        {"seq": 2},
        {"expires_at": 3e9},
        {"signer": KeyPair.from_seed(b"x").public.raw},
    ):
        with pytest.raises(SignatureError):
            check_record(dataclasses.replace(record, **change))


def test_an_advert_under_another_runtimes_key_is_refused() -> None:
    record = make_record(
        KEYS,
        key=advert_key("nodejs"),
        seq=1,
        expires_at=2e9,
        host="10.0.0.1",
        port=8000,
        capacity=_capacity(),
    )
    with pytest.raises(DecodeError, match="runtimes"):
        check_record(record)


def test_records_fit_one_unfragmented_datagram() -> None:
    big = _capacity(tuple(f"runtime-{i:024d}" for i in range(8)))
    with pytest.raises(ValueError, match="over"):
        make_record(
            KEYS, key=advert_key(big.runtimes[0]), seq=1, expires_at=2e9, host="h" * 64, port=1, capacity=big
        )
    record = make_record(
        KEYS,
        key=advert_key("python3.11"),
        seq=2**62,
        expires_at=2e9,
        host="h" * 64,
        port=65535,
        capacity=_capacity(),
    )
    assert len(codec.encode(record)) <= MAX_RECORD_BYTES < MAX_DATAGRAM_BYTES
