"""Keys and signed records: where adverts and provider records live, how they are made and checked.

An advert for runtime R lives under `advert_key(R)`; a provider record for bundle D (its SHA-256) under
`provider_key(D)`. Many publishers share one key; each publisher's record is signed by that publisher.
`check_record` is what every receiver runs before storing or believing a record: signature, size,
and that an advert sits only under the keys of runtimes it offers. It does not judge expiry or sequence
numbers (that is the store's policy, `store.py`).
"""

from __future__ import annotations

import hashlib

from p2pfaas import codec, signing
from p2pfaas.dht.wire import ID_BYTES, MAX_RECORD_BYTES, Capacity, Record
from p2pfaas.errors import DecodeError, SignatureError
from p2pfaas.identity import KeyPair, node_id_of


def advert_key(runtime: str) -> bytes:
    """The DHT key under which volunteers offering `runtime` advertise."""
    return hashlib.sha1(b"p2pfaas/advert/" + runtime.encode()).digest()


def provider_key(bundle_digest: bytes) -> bytes:
    """The DHT key under which holders of a bundle (by its SHA-256) announce themselves."""
    return hashlib.sha1(b"p2pfaas/provider/" + bundle_digest).digest()


def make_record(
    keys: KeyPair,
    *,
    key: bytes,
    seq: int,
    expires_at: float,
    host: str,
    port: int,
    capacity: Capacity | None = None,
) -> Record:
    """A record signed by `keys`; raises ValueError if it would not fit one datagram with room to spare."""
    record = signing.sign(
        Record(
            key=key,
            seq=seq,
            expires_at=expires_at,
            host=host,
            port=port,
            capacity=capacity,
            signer=b"",
            signature=b"",
        ),
        keys,
    )
    size = len(codec.encode(record))
    if size > MAX_RECORD_BYTES:
        raise ValueError(f"record encodes to {size} bytes, over {MAX_RECORD_BYTES}")
    return record


def publisher_of(record: Record) -> bytes:
    return node_id_of(record.signer)


def check_record(record: Record) -> None:
    """Raise SignatureError or DecodeError unless `record` is well-formed and signed by its `signer`."""
    if len(record.key) != ID_BYTES:
        raise DecodeError("record key must be 20 bytes")
    if len(codec.encode(record)) > MAX_RECORD_BYTES:
        raise DecodeError("record too large")
    if record.capacity is not None and record.key not in {advert_key(r) for r in record.capacity.runtimes}:
        raise DecodeError("an advert may only sit under the keys of its runtimes")
    signing.verify(record)  # raises SignatureError


__all__ = ["SignatureError", "advert_key", "check_record", "make_record", "provider_key", "publisher_of"]
