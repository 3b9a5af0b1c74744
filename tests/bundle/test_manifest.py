"""Manifest `concurrency`: read from TOML, checked, and added to the wire without breaking old bundles."""

from __future__ import annotations

import msgpack
import pytest

from p2pfaas import codec, signing
from p2pfaas.bundle.manifest import parse_manifest, validate_manifest
from p2pfaas.errors import DecodeError, ManifestError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import BundleHeader, Manifest

BASE = b'name = "f"\nversion = "1"\nhandler = "handler:main"\n'


def test_concurrency_defaults_to_one_and_is_read_from_toml() -> None:
    assert parse_manifest(BASE).concurrency == 1
    assert parse_manifest(BASE + b"concurrency = 8\n").concurrency == 8


@pytest.mark.parametrize("value", [b"0", b"65", b'"2"', b"true", b"1.5"])
def test_bad_concurrency_is_refused_with_its_name(value: bytes) -> None:
    with pytest.raises(ManifestError, match="concurrency"):
        parse_manifest(BASE + b"concurrency = " + value + b"\n")


def manifest(concurrency: int = 1) -> Manifest:
    return Manifest("f", "1", "python3.11", "handler:main", 128, 10.0, False, concurrency)


def old_wire_form() -> bytes:
    """A manifest as encoded before `concurrency` existed: seven fields."""
    fields = ["f", "1", "python3.11", "handler:main", 128, 10.0, False]
    return bytes(msgpack.packb([Manifest.TAG, Manifest.VERSION, *fields], use_bin_type=True))


def test_old_encodings_decode_and_encode_back_to_the_same_bytes() -> None:
    decoded = codec.decode_as(Manifest, old_wire_form())
    assert decoded == manifest(1)
    assert codec.encode(decoded) == old_wire_form()  # so signatures over old bundles still verify


def test_a_concurrency_above_one_travels_and_the_default_is_never_spelled_out() -> None:
    assert codec.decode_as(Manifest, codec.encode(manifest(4))).concurrency == 4
    spelled_out = msgpack.unpackb(codec.encode(manifest(4)))
    spelled_out[-1] = 1
    with pytest.raises(DecodeError, match="default"):  # one canonical encoding per manifest
        codec.decode_as(Manifest, bytes(msgpack.packb(spelled_out, use_bin_type=True)))
    too_short = msgpack.unpackb(old_wire_form())[:-1]
    with pytest.raises(DecodeError, match="fields"):
        codec.decode_as(Manifest, bytes(msgpack.packb(too_short, use_bin_type=True)))


def test_a_header_signed_with_an_old_manifest_still_verifies() -> None:
    keys = KeyPair.generate()
    old = codec.decode_as(Manifest, old_wire_form())
    header = signing.sign(BundleHeader(old, "ab" * 32, 100, keys.public.raw, b""), keys)
    again = codec.decode_as(BundleHeader, codec.encode(header))
    assert signing.verify(again) == keys.public
    validate_manifest(again.manifest)
