"""Bundles: deterministic packing, signing, hostile-archive verification, atomic extraction, the cache.

Malicious archives are built by hand and correctly signed by the attacker, so they get past the
signature and digest checks and exercise the member checks; each test then asserts that nothing
was written anywhere under its temporary directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import io
import os
import runpy
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import p2pfaas
from p2pfaas import codec, signing
from p2pfaas.bundle import (
    MANIFEST_FILE,
    MAX_FILES,
    BundleCache,
    extract_bundle,
    load_manifest,
    make_bundle,
    pack_directory,
    validate_manifest,
    verify_bundle,
)
from p2pfaas.bundle import cache as bundle_cache
from p2pfaas.bundle.manifest import parse_manifest
from p2pfaas.errors import BundleError, DecodeError, ManifestError, SignatureError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Bundle, BundleHeader, Manifest

LESSEE = KeyPair.from_seed(b"lessee")
ATTACKER = KeyPair.from_seed(b"attacker")
SAMPLE = Path(p2pfaas.__file__).parent / "sample" / "hello"

TOML = b"""name = "demo"
version = "1.2.3"
handler = "pkg.entry:handle"
memory_mb = 64
timeout_s = 5
deterministic = true
"""
FILES: dict[str, bytes] = {
    MANIFEST_FILE: TOML,
    "pkg/__init__.py": b"",
    "pkg/entry.py": b"def handle(event):\n    return {'ok': True}\n",
    "data/table.csv": b"a,b\n1,2\n",
    "run.sh": b"#!/bin/sh\necho hi\n",
}
EXECUTABLE = {"run.sh"}


def write_tree(root: Path, files: dict[str, bytes], *, reverse: bool = False) -> Path:
    """Create `files` under `root`, in sorted or reverse order (creation order must not matter)."""
    for name in sorted(files, reverse=reverse):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
        if name in EXECUTABLE:
            path.chmod(path.stat().st_mode | 0o100)
    return root


def signed(archive: bytes, keys: KeyPair = ATTACKER, manifest: Manifest | None = None) -> Bundle:
    """A bundle whose header is truthful about `archive` and correctly signed by `keys`."""
    header = BundleHeader(
        manifest=manifest or parse_manifest(TOML),
        digest=hashlib.sha256(archive).hexdigest(),
        size_bytes=len(archive),
        signer=b"",
        signature=b"",
    )
    return Bundle(header=signing.sign(header, keys), archive=archive)


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **attrs: object) -> bytes:
    """One raw tar member (header and padded data), written as an attacker would, unchecked."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    padding = b"\0" * (-len(data) % tarfile.BLOCKSIZE)
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + data + padding


def tar_gz(*members: bytes, manifest: bool = True) -> bytes:
    head = [member(MANIFEST_FILE, TOML)] if manifest else []
    return gzip.compress(b"".join([*head, *members]) + b"\0" * (2 * tarfile.BLOCKSIZE), mtime=0)


def files_under(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return make_bundle(write_tree(tmp_path_factory.mktemp("demo"), FILES), LESSEE)


# --- determinism --------------------------------------------------------------------------------


def test_same_directory_gives_same_bytes_whatever_its_history(tmp_path: Path) -> None:
    first = write_tree(tmp_path / "first", FILES)
    old_umask = os.umask(0o077)  # a second checkout by a stricter user: files 0o600, dirs 0o700
    try:
        second = write_tree(tmp_path / "second", FILES, reverse=True)
    finally:
        os.umask(old_umask)
    for path in second.rglob("*"):
        os.utime(path, (1_234_567_890, 1_234_567_890))
    # Litter that must be skipped: caches, VCS metadata, Finder droppings.
    for junk in ("pkg/__pycache__/entry.cpython-311.pyc", "stale.pyc", ".git/HEAD", ".DS_Store"):
        (second / junk).parent.mkdir(parents=True, exist_ok=True)
        (second / junk).write_bytes(b"junk")

    manifest, archive = pack_directory(first)
    assert pack_directory(first) == (manifest, archive)
    assert pack_directory(second) == (manifest, archive)
    _, owned = pack_directory(first, owner_key_id=LESSEE.key_id)
    assert make_bundle(second, LESSEE).header.digest == hashlib.sha256(owned).hexdigest()


def test_two_owners_of_the_same_code_get_two_addresses(tmp_path: Path) -> None:
    """Issue #16 item 8: a second lessee could not deploy a byte-identical bundle ("already registered
    under another owner"): the archive now names its owner, so each has its own digest."""
    root = write_tree(tmp_path, FILES)
    other = KeyPair.generate()
    mine, theirs = make_bundle(root, LESSEE), make_bundle(root, other)
    assert mine.header.digest != theirs.header.digest
    assert make_bundle(root, LESSEE) == mine  # still deterministic per owner
    (root / ".p2pfaas-owner").write_text(other.key_id)  # a planted marker is skipped, not packed
    assert make_bundle(root, LESSEE).header.digest == mine.header.digest


def test_archive_format_is_normalised(tmp_path: Path) -> None:
    _, archive = pack_directory(write_tree(tmp_path, FILES))
    # gzip header: no FNAME flag, mtime 0, OS "unknown", whatever the platform.
    assert archive[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(FILES)
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.mode == (0o755 if m.name in EXECUTABLE else 0o644)
        assert m.isreg()


def test_exec_bit_changes_the_digest(tmp_path: Path) -> None:
    root = write_tree(tmp_path, FILES)
    before = pack_directory(root)[1]
    (root / "data/table.csv").chmod(0o755)
    assert pack_directory(root)[1] != before


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


def test_sample_function_packs_and_runs(tmp_path: Path) -> None:
    bundle = make_bundle(SAMPLE, LESSEE)
    assert bundle.header.manifest == Manifest("hello", "1.0.0", "python3.11", "main:handle", 64, 5.0, False)
    tree = extract_bundle(bundle, tmp_path / "hello")
    handle = runpy.run_path(str(tree / "main.py"))["handle"]
    result = handle({"name": "volunteer", "numbers": [1, 2, 3.5]})
    assert result["greeting"] == "hello volunteer"
    assert result["sum"] == 6.5
    assert set(result["ran_on"]) >= {"hostname", "uid", "python"}


def test_extract_refuses_an_occupied_destination(demo: Bundle, tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "mine.txt").write_text("keep me")
    with pytest.raises(BundleError, match="does not hold bundle"):
        extract_bundle(demo, tmp_path / "tree")
    assert (tmp_path / "tree" / "mine.txt").read_text() == "keep me"


def test_concurrent_extractions_of_one_bundle_all_succeed(demo: Bundle, tmp_path: Path) -> None:
    destination = tmp_path / "tree"
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: extract_bundle(demo, destination), range(8)))
    assert results == [destination] * 8
    assert [p.name for p in tmp_path.iterdir()] == ["tree"]


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


def test_tarfile_data_filter_also_guards_extraction(
    demo: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Disable our member checks to show the second line of defence holds on its own.
    monkeypatch.setattr(bundle_cache, "verified_tar", lambda b: gzip.decompress(b.archive))
    evil = signed(tar_gz(member("../escape", b"x")))
    with pytest.raises(BundleError, match="extraction refused"):
        extract_bundle(evil, tmp_path / "box" / "tree")
    assert files_under(tmp_path) == [tmp_path / "box"]


# --- packing refuses ----------------------------------------------------------------------------


def test_symlinks_and_special_files_are_refused_at_pack_time(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "fn", FILES)
    (root / "pkg" / "secrets").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match=r"pkg/secrets: a symbolic link"):
        pack_directory(root)
    (root / "pkg" / "secrets").unlink()
    (root / "linked_dir").symlink_to(root / "pkg", target_is_directory=True)
    with pytest.raises(BundleError, match="linked_dir: a symbolic link"):
        pack_directory(root)
    (root / "linked_dir").unlink()
    os.mkfifo(root / "pipe")
    with pytest.raises(BundleError, match="pipe: a fifo"):
        pack_directory(root)
    (root / "pipe").unlink()
    (root / "pkg" / "win\\dows.py").write_bytes(b"")  # what the verifier would refuse, pack refuses
    with pytest.raises(BundleError, match="backslash"):
        pack_directory(root)


def test_pack_caps(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "many", {MANIFEST_FILE: TOML})
    for i in range(MAX_FILES):
        (root / f"f{i}").write_bytes(b"")
    with pytest.raises(BundleError, match="more than 1000 files"):
        pack_directory(root)
    root = write_tree(tmp_path / "big", {MANIFEST_FILE: TOML})
    (root / "random.bin").write_bytes(os.urandom(9 * 1024 * 1024))  # incompressible, over 8 MiB
    with pytest.raises(BundleError, match=r"archive of \d+ bytes is over"):
        pack_directory(root)


def test_pack_needs_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no manifest"):
        pack_directory(write_tree(tmp_path, {"main.py": b""}))
    with pytest.raises(BundleError, match="not a directory"):
        pack_directory(tmp_path / "missing")


# --- manifests ----------------------------------------------------------------------------------

BASE = 'name = "demo"\nversion = "1"\nhandler = "main:handle"\n'


def test_manifest_defaults(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_FILE).write_text(BASE)
    assert load_manifest(tmp_path) == Manifest("demo", "1", "python3.11", "main:handle", 128, 10.0, False)


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        (BASE + "colour = 'blue'\nsize = 1\n", "unknown key.*colour, size"),
        ('version = "1"\nhandler = "m:f"\n', "missing required key.*name"),
        (BASE.replace('"demo"', '"Demo"'), "name 'Demo' must match"),
        (BASE.replace('"demo"', '"-demo"'), "name '-demo' must match"),
        (BASE.replace('"demo"', '"' + "d" * 65 + '"'), "must match"),
        (BASE.replace('"1"', '""'), "version '' must be"),
        (BASE.replace('"1"', '"1 beta"'), "version '1 beta' must be"),
        (BASE.replace('"1"', "1.0"), "version must be a string, got float"),
        (BASE + 'runtime = "python2.7"\n', "runtime 'python2.7' is not supported"),
        (BASE.replace("main:handle", "main"), "handler 'main' must look like"),
        (BASE.replace("main:handle", "main:handle:x"), "must look like"),
        (BASE.replace("main:handle", "../main:handle"), "must look like"),
        (BASE.replace("main:handle", "import:handle"), "keyword 'import'"),
        (BASE + "memory_mb = 16\n", "memory_mb 16 must be an integer in 32..4096"),
        (BASE + "memory_mb = 8192\n", "memory_mb 8192"),
        (BASE + 'memory_mb = "64"\n', "memory_mb must be an integer, got str"),
        (BASE + "memory_mb = true\n", "memory_mb must be an integer, got bool"),
        (BASE + "timeout_s = 0\n", r"timeout_s 0.0 must be a number in \(0, 900\]"),
        (BASE + "timeout_s = 901\n", "timeout_s 901.0"),
        (BASE + "timeout_s = nan\n", "timeout_s nan"),
        (BASE + 'deterministic = "yes"\n', "deterministic must be true or false"),
        (BASE + "name = 'twice'\n", "not valid TOML"),
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
    (tmp_path / "elsewhere.toml").write_text(BASE)
    (tmp_path / MANIFEST_FILE).symlink_to(tmp_path / "elsewhere.toml")
    with pytest.raises(ManifestError, match="regular file"):
        load_manifest(tmp_path)


# --- the cache ----------------------------------------------------------------------------------


def watch_extractions(monkeypatch: pytest.MonkeyPatch, during: Callable[[], object]) -> list[int]:
    """Wrap the cache's extract_bundle; return a list that records how many ran at once."""
    active = [0]
    peaks: list[int] = []
    lock = threading.Lock()
    real = bundle_cache.extract_bundle

    def watched(bundle: Bundle, destination: Path) -> Path:
        with lock:
            active[0] += 1
            peaks.append(active[0])
        try:
            during()
            return real(bundle, destination)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(bundle_cache, "extract_bundle", watched)
    return peaks


async def test_cache_serialises_concurrent_stores_of_one_digest(
    demo: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    peaks = watch_extractions(monkeypatch, lambda: time.sleep(0.02))
    cache = BundleCache(tmp_path / "cache")
    digest = demo.header.digest
    assert (len(cache), cache.path_for(digest), cache.archive(digest)) == (0, None, None)

    paths = await asyncio.gather(*(cache.store(demo) for _ in range(5)))

    assert paths == [tmp_path / "cache" / digest] * 5
    assert max(peaks) == 1
    assert len(cache) == 1
    assert cache.path_for(digest) == paths[0]
    assert cache.archive(digest) == demo
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [digest, f"{digest}.bundle"]


async def test_cache_stores_different_digests_in_parallel(
    demo: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    barrier = threading.Barrier(2, timeout=10)  # passes only if both stores are in flight at once
    watch_extractions(monkeypatch, barrier.wait)
    other = make_bundle(write_tree(tmp_path / "other", {**FILES, "extra.txt": b"x"}), LESSEE)
    cache = BundleCache(tmp_path / "cache")
    await asyncio.gather(cache.store(demo), cache.store(other))
    assert len(cache) == 2


async def test_cache_rejects_a_forgery_then_accepts_the_real_bundle(demo: Bundle, tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache")
    forged = dataclasses.replace(demo, header=dataclasses.replace(demo.header, signer=ATTACKER.public.raw))
    with pytest.raises(SignatureError):
        await cache.store(forged)
    assert len(cache) == 0 and cache.archive(demo.header.digest) is None
    assert await cache.store(demo) == cache.path_for(demo.header.digest)


async def test_cache_ignores_malformed_digests_and_damaged_archives(demo: Bundle, tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache")
    await cache.store(demo)
    assert cache.path_for("../../etc") is None and cache.archive("../../etc") is None
    digest = demo.header.digest
    (tmp_path / "cache" / f"{digest}.bundle").write_bytes(b"garbage")
    assert cache.archive(digest) is None
    await cache.store(demo)  # rewrites the damaged copy
    assert cache.archive(digest) == demo
    shutil.rmtree(tmp_path / "cache" / digest)
    assert cache.path_for(digest) is None and len(cache) == 0
