"""Verifying a bundle from a stranger: the signed header, the digest, and every member of a hostile archive.

Malicious archives are built by hand and correctly signed by the attacker, so they get past the
signature and digest checks and exercise the member checks; each test then asserts that nothing
was written anywhere under its temporary directory.
"""

from __future__ import annotations

import dataclasses
import gzip
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfaas import codec
from p2pfaas.bundle import (
    MANIFEST_FILE,
    MAX_FILES,
    extract_bundle,
    verify_bundle,
)
from p2pfaas.errors import BundleError, DecodeError, SignatureError
from p2pfaas.messages import Bundle
from tests.bundle.conftest import (
    ATTACKER,
    EXECUTABLE,
    FILES,
    LESSEE,
    TOML,
    files_under,
    member,
    signed,
    tar_gz,
)

# --- round trip ---------------------------------------------------------------------------------


def test_pack_sign_verify_extract_round_trip(demo: Bundle, tmp_path: Path) -> None:
    verify_bundle(demo, expected_digest=demo.header.digest, owner=LESSEE.public.raw)
    wire = codec.decode_as(Bundle, codec.encode(demo))
    assert wire == demo
    tree = extract_bundle(wire, tmp_path / "x" / "tree")
    assert tree == tmp_path / "x" / "tree"
    for name, data in FILES.items():
        path = tree / name
        assert path.read_bytes() == data
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if name in EXECUTABLE else 0o644)
    for directory in (tree, tree / "pkg", tree / "data"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert extract_bundle(wire, tree) == tree  # already there: returned as is
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["tree"]  # no staging directory left


# --- tampering ----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_flipped_bit_in_the_archive_is_rejected(demo: Bundle, data: st.DataObject) -> None:
    bit = data.draw(st.integers(0, len(demo.archive) * 8 - 1), label="bit")
    archive = bytearray(demo.archive)
    archive[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BundleError, match="SHA-256"):
        verify_bundle(dataclasses.replace(demo, archive=bytes(archive)))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_flipped_bit_in_the_encoded_bundle_is_rejected(demo: Bundle, data: st.DataObject) -> None:
    encoded = bytearray(codec.encode(demo))
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1), label="bit")
    encoded[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((DecodeError, BundleError, SignatureError)):
        verify_bundle(codec.decode_as(Bundle, bytes(encoded)))


def test_truncated_archive_is_rejected(demo: Bundle) -> None:
    short = demo.archive[:-10]
    with pytest.raises(BundleError, match="header says"):
        verify_bundle(dataclasses.replace(demo, archive=short))
    with pytest.raises(BundleError, match="truncated"):  # even when the attacker re-signs it
        verify_bundle(signed(short))


def test_wrong_owner_and_wrong_digest(demo: Bundle) -> None:
    with pytest.raises(SignatureError, match="not its owner"):
        verify_bundle(demo, owner=ATTACKER.public.raw)
    with pytest.raises(BundleError, match="not the expected"):
        verify_bundle(demo, expected_digest="0" * 64)


def test_tampered_header_is_rejected(demo: Bundle) -> None:
    bigger = dataclasses.replace(demo.header.manifest, memory_mb=4096)
    with pytest.raises(SignatureError):
        verify_bundle(dataclasses.replace(demo, header=dataclasses.replace(demo.header, manifest=bigger)))
    bad = bytearray(demo.header.signature)
    bad[0] ^= 1
    with pytest.raises(SignatureError):
        verify_bundle(
            dataclasses.replace(demo, header=dataclasses.replace(demo.header, signature=bytes(bad)))
        )
    stolen = dataclasses.replace(demo.header, signer=ATTACKER.public.raw)  # claim another key
    with pytest.raises(SignatureError):
        verify_bundle(dataclasses.replace(demo, header=stolen))
    # Re-signed by an attacker with a manifest the archive does not contain.
    with pytest.raises(BundleError, match="does not match the signed manifest"):
        verify_bundle(signed(demo.archive, manifest=bigger))


# --- hostile archives, correctly signed by the attacker ------------------------------------------


def hostile_cases(outside: Path) -> Iterator[tuple[str, bytes, str]]:
    yield "absolute", tar_gz(member(str(outside / "abs"), b"x")), "absolute"
    yield "dotdot", tar_gz(member("../escape", b"x")), r"'\.\./escape' has an empty, '\.' or '\.\.'"
    yield "inner dotdot", tar_gz(member("pkg/../../escape", b"x")), r"'pkg/\.\./\.\./escape' has an empty"
    yield "symlink", tar_gz(member("link", kind=tarfile.SYMTYPE, linkname=str(outside))), "link"
    hardlink = member("hard", kind=tarfile.LNKTYPE, linkname="../../etc/passwd")
    yield "hardlink", tar_gz(hardlink), "link"
    device = member("null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3)
    yield "device", tar_gz(device), "only files and directories"
    yield "fifo", tar_gz(member("pipe", kind=tarfile.FIFOTYPE)), "only files and directories"
    huge = member("huge", size=10 * 1024**3)  # declares 10 GiB, holds none
    yield "huge declared size", tar_gz(huge), "declares"
    overwrite = member(MANIFEST_FILE, TOML.replace(b"64", b"4096"))  # a second, different manifest
    yield "duplicate", tar_gz(overwrite), "appears twice"
    yield "file then dir", tar_gz(member("a", b"x"), member("a/b", b"y")), "inside the file"
    yield "reserved name", tar_gz(member(".p2pfaas-digest", b"0" * 64)), "reserved"
    yield "no manifest", tar_gz(member("main.py", b""), manifest=False), "no p2pfaas.toml"
    yield "dot component", tar_gz(member("./main.py", b"")), r"'\./main\.py' has an empty"
    many = [member(f"f{i}", b"") for i in range(MAX_FILES)]
    yield "too many members", tar_gz(*many), "more than 1000 members"
    yield "trailing data", tar_gz() + gzip.compress(member("late", b"x"), mtime=0), "after the gzip stream"
    yield "not gzip", b"PK\x03\x04 a zip file", "not valid gzip"


HOSTILE = [case[0] for case in hostile_cases(Path("/x"))]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_archive_is_rejected_and_nothing_is_written(case: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (_, archive, reason) = next(c for c in hostile_cases(outside) if c[0] == case)
    bundle = signed(archive)
    with pytest.raises(BundleError, match=reason):
        verify_bundle(bundle)
    with pytest.raises(BundleError, match=reason):
        extract_bundle(bundle, tmp_path / "box" / "tree")
    assert files_under(tmp_path) == []


def test_decompression_bomb_is_stopped_at_the_cap(tmp_path: Path) -> None:
    bomb = tar_gz(member("zeros", b"\0" * (70 * 1024 * 1024)))
    assert len(bomb) < 1024 * 1024
    with pytest.raises(BundleError, match="inflates to more than"):
        extract_bundle(signed(bomb), tmp_path / "tree")
    assert files_under(tmp_path) == []
