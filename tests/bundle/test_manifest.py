"""Manifests: `p2pfaas.toml` parsed and checked, its defaults and errors; `concurrency` and `egress`
read from TOML and added to the wire without breaking old bundles."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgpack
import pytest

from p2pfaas import codec, signing
from p2pfaas.bundle import (
    MANIFEST_FILE,
    load_manifest,
    pack_directory,
    validate_manifest,
)
from p2pfaas.bundle.manifest import parse_manifest
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


def test_egress_is_read_from_toml_travels_and_is_checked() -> None:
    declared = parse_manifest(BASE + b'egress = ["api.example.org:443", "192.0.2.7:8080"]\n')
    assert declared.egress == ("api.example.org:443", "192.0.2.7:8080")
    assert codec.decode_as(Manifest, codec.encode(declared)) == declared
    assert parse_manifest(BASE).egress == () and codec.encode(manifest(1)) == old_wire_form()


@pytest.mark.parametrize(
    "value",
    [b'"api.example.org:443"', b'["api.example.org"]', b'["*.example.org:443"]', b'["u@h:1"]',
     b'["h:0"]', b'["Api.Example.org:443"]', b'["[::1]:80"]', b"[1]", b"[" + b'"h:1",' * 17 + b"]"],
)  # fmt: skip
def test_a_bad_egress_entry_is_refused_with_its_name(value: bytes) -> None:
    with pytest.raises(ManifestError, match="egress"):
        parse_manifest(BASE + b"egress = " + value + b"\n")


BASE_TOML = 'name = "demo"\nversion = "1"\nhandler = "main:handle"\n'


def test_manifest_defaults(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(BASE_TOML)
    assert load_manifest(tmp_path) == Manifest("demo", "1", "python3.11", "main:handle", 128, 10.0, False)


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        (BASE_TOML + "colour = 'blue'\nsize = 1\n", "unknown key.*colour, size"),
        ('version = "1"\nhandler = "m:f"\n', "missing required key.*name"),
        (BASE_TOML.replace('"demo"', '"Demo"'), "name 'Demo' must match"),
        (BASE_TOML.replace('"demo"', '"-demo"'), "name '-demo' must match"),
        (BASE_TOML.replace('"demo"', '"' + "d" * 65 + '"'), "must match"),
        (BASE_TOML.replace('"1"', '""'), "version '' must be"),
        (BASE_TOML.replace('"1"', '"1 beta"'), "version '1 beta' must be"),
        (BASE_TOML.replace('"1"', "1.0"), "version must be a string, got float"),
        (BASE_TOML + 'runtime = "python2.7"\n', "runtime 'python2.7' is not supported"),
        (BASE_TOML.replace("main:handle", "main"), "handler 'main' must look like"),
        (BASE_TOML.replace("main:handle", "main:handle:x"), "must look like"),
        (BASE_TOML.replace("main:handle", "../main:handle"), "must look like"),
        (BASE_TOML.replace("main:handle", "import:handle"), "keyword 'import'"),
        (BASE_TOML + "memory_mb = 16\n", "memory_mb 16 must be an integer in 32..4096"),
        (BASE_TOML + "memory_mb = 8192\n", "memory_mb 8192"),
        (BASE_TOML + 'memory_mb = "64"\n', "memory_mb must be an integer, got str"),
        (BASE_TOML + "memory_mb = true\n", "memory_mb must be an integer, got bool"),
        (BASE_TOML + "timeout_s = 0\n", r"timeout_s 0.0 must be a number in \(0, 900\]"),
        (BASE_TOML + "timeout_s = 901\n", "timeout_s 901.0"),
        (BASE_TOML + "timeout_s = nan\n", "timeout_s nan"),
        (BASE_TOML + 'deterministic = "yes"\n', "deterministic must be true or false"),
        (BASE_TOML + "name = 'twice'\n", "not valid TOML"),
    ],
)
def test_manifest_errors(toml: str, reason: str, tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(toml)
    with pytest.raises(ManifestError, match=reason):
        load_manifest(tmp_path)
    with pytest.raises(ManifestError, match=reason):
        pack_directory(tmp_path)


def test_validate_manifest_checks_decoded_manifests() -> None:
    good = Manifest("demo", "1", "python3.11", "a.b:c", 32, 900.0, True)
    validate_manifest(good)
    with pytest.raises(ManifestError, match="timeout_s"):
        validate_manifest(dataclasses.replace(good, timeout_s=float("inf")))
    with pytest.raises(ManifestError, match="memory_mb"):
        validate_manifest(dataclasses.replace(good, memory_mb=True))


def test_manifest_must_be_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.toml").write_text(BASE_TOML)
    (tmp_path / MANIFEST_FILE).symlink_to(tmp_path / "elsewhere.toml")
    with pytest.raises(ManifestError, match="regular file"):
        load_manifest(tmp_path)
