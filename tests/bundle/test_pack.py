"""Packing a directory into a bundle: deterministic bytes whatever the tree's history, one address per
owner, a normalised archive; and what packing refuses."""

from __future__ import annotations

import hashlib
import io
import os
import runpy
import tarfile
from pathlib import Path

import pytest

from p2pfaas.bundle import (
    MANIFEST_FILE,
    MAX_FILES,
    extract_bundle,
    make_bundle,
    pack_directory,
)
from p2pfaas.errors import BundleError, ManifestError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Manifest
from tests.bundle.conftest import (
    EXECUTABLE,
    FILES,
    LESSEE,
    SAMPLE,
    TOML,
    write_tree,
)


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


def test_sample_function_packs_and_runs(tmp_path: Path) -> None:
    bundle = make_bundle(SAMPLE, LESSEE)
    assert bundle.header.manifest == Manifest("hello", "1.0.0", "python3.11", "main:handle", 64, 5.0, False)
    tree = extract_bundle(bundle, tmp_path / "hello")
    handle = runpy.run_path(str(tree / "main.py"))["handle"]
    result = handle({"name": "volunteer", "numbers": [1, 2, 3.5]})
    assert result["greeting"] == "hello volunteer"
    assert result["sum"] == 6.5
    assert set(result["ran_on"]) >= {"hostname", "uid", "python"}


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
