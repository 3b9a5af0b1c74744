"""The kit of the bundle tests: a demo function's tree and its bundle, and archives built by hand as an
attacker would build them, correctly signed."""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from pathlib import Path

import pytest

import p2pfaas
from p2pfaas import signing
from p2pfaas.bundle import (
    MANIFEST_FILE,
    make_bundle,
)
from p2pfaas.bundle.manifest import parse_manifest
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
