"""Dependency locks: the wheels a function needs, pinned by SHA-256, and the layer they make.

A function that names `requirements` (in its manifest, or a `requirements.txt` beside it) is
resolved at pack time (`p2pfaas.bundle.resolve`) into a `Lock`: for each wheel its project name,
version, file name, size and SHA-256. The lock is written into the function directory as
`p2pfaas.lock` (JSON), so it travels inside the signed bundle: a node trusts a wheel only because
its hash is in a lock the lessee signed. The wheels of one lock form a content-addressed
**dependency layer** (`layer_digest`, the SHA-256 of the lock's canonical form): functions with the
same lock share one layer, which nodes fetch, verify and unpack once (`p2pfaas.node.layers`).

This module only reads, writes and checks locks; it neither downloads nor unpacks.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pfaas.errors import BundleError, ManifestError

__all__ = [
    "LOCK_FILE",
    "MAX_LAYER_BYTES",
    "MAX_WHEEL_BYTES",
    "REQUIREMENTS_FILE",
    "WHEEL_FILE",
    "Lock",
    "LockedWheel",
    "lock_in_tar",
    "parse_lock",
    "read_lock",
    "requirements_of",
    "wheel_claim",
]

LOCK_FILE = "p2pfaas.lock"
REQUIREMENTS_FILE = "requirements.txt"
PLATFORM = "manylinux_x86_64-cp311"  # what the runtime image runs: CPython 3.11 on x86-64 glibc Linux
MAX_WHEEL_BYTES = 64 * 1024 * 1024
MAX_LAYER_BYTES = 1024 * 1024 * 1024  # all wheels of a lock together (compressed)
MAX_WHEELS = 256
MAX_LOCK_BYTES = 256 * 1024
MAX_REQUIREMENTS = 128

WHEEL_FILE = re.compile(r"[A-Za-z0-9_.+!-]{1,200}\.whl")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_VERSION = re.compile(r"[A-Za-z0-9.+!_-]{1,64}")


@dataclass(frozen=True, order=True)
class LockedWheel:
    name: str  # the project, normalized (PEP 503)
    version: str
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Lock:
    wheels: tuple[LockedWheel, ...]  # sorted by name
    requirements_sha256: str  # of the requirements it resolves: a changed list needs a new lock
    platform: str = PLATFORM

    @property
    def size(self) -> int:
        return sum(wheel.size for wheel in self.wheels)

    @property
    def layer_digest(self) -> str:
        """The layer's address: the SHA-256 of the platform and the wheels' own hashes, sorted.
        Nothing a lessee can vary without changing the bytes: names and versions are labels, and
        one set of wheels under other labels is the same layer, fetched once."""
        canonical = json.dumps([self.platform, sorted(w.sha256 for w in self.wheels)], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> str:
        document = {
            "platform": self.platform,
            "requirements_sha256": self.requirements_sha256,
            "wheels": [vars(wheel) for wheel in self.wheels],
        }
        return json.dumps(document, indent=1, sort_keys=True) + "\n"


def wheel_claim(sha256: str, filename: str, size: int) -> bytes:
    """What a lessee signs to upload a wheel to the anchor (`p2pfaas.anchor.wheels`)."""
    return f"p2pfaas wheel v1\n{sha256}\n{filename}\n{size}".encode()


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_hash(requirements: list[str]) -> str:
    return hashlib.sha256("\n".join(requirements).encode()).hexdigest()


def requirements_of(directory: Path) -> list[str]:
    """The requirements a function directory names: its manifest's `requirements`, else the lines
    of `requirements.txt` beside it (comments and blank lines dropped); [] when neither."""
    directory = Path(directory)
    try:
        document = tomllib.loads((directory / "p2pfaas.toml").read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        document = {}  # load_manifest reports what is wrong with it
    listed = document.get("requirements")
    if listed is not None:
        if not (isinstance(listed, list) and all(isinstance(r, str) and r.strip() for r in listed)):
            raise ManifestError(f"{directory}/p2pfaas.toml: requirements must be a list of strings")
        requirements = [r.strip() for r in listed]
    elif (directory / REQUIREMENTS_FILE).is_file():
        lines = (directory / REQUIREMENTS_FILE).read_text().splitlines()
        requirements = [line.split("#")[0].strip() for line in lines]
        requirements = [r for r in requirements if r]
    else:
        return []
    if len(requirements) > MAX_REQUIREMENTS:
        raise ManifestError(f"{directory}: more than {MAX_REQUIREMENTS} requirements")
    for requirement in requirements:
        if requirement.startswith("-") or "://" in requirement or requirement.startswith((".", "/")):
            raise ManifestError(
                f"{directory}: requirement {requirement!r:.80} is not a package from the index "
                "(options, URLs and paths are not allowed)"
            )
    return requirements


def parse_lock(data: bytes, *, source: str = LOCK_FILE) -> Lock:
    """Parse and check a lock; raises `BundleError` naming what is wrong."""
    if len(data) > MAX_LOCK_BYTES:
        raise BundleError(f"{source}: {len(data)} bytes is over the {MAX_LOCK_BYTES}-byte limit")
    try:
        document: Any = json.loads(data)
        platform = document["platform"]
        requirements_sha256 = document["requirements_sha256"]
        entries = document["wheels"]
        if not (
            isinstance(entries, list) and isinstance(platform, str) and isinstance(requirements_sha256, str)
        ):
            raise TypeError("wheels must be a list, platform and requirements_sha256 strings")
        wheels = tuple(
            LockedWheel(str(e["name"]), str(e["version"]), str(e["filename"]), str(e["sha256"]), e["size"])
            for e in entries
        )
    except (ValueError, KeyError, TypeError) as error:
        raise BundleError(f"{source}: not a p2pfaas lock: {error}") from None
    if platform != PLATFORM:
        raise BundleError(f"{source}: locked for {platform!r:.40}, the runtime is {PLATFORM}")
    if not wheels or len(wheels) > MAX_WHEELS:
        raise BundleError(f"{source}: a lock holds 1 to {MAX_WHEELS} wheels")
    for wheel in wheels:
        if not (
            _PROJECT.fullmatch(wheel.name)
            and _VERSION.fullmatch(wheel.version)
            and WHEEL_FILE.fullmatch(wheel.filename)
            and _HEX64.fullmatch(wheel.sha256)
            and type(wheel.size) is int
            and 0 < wheel.size <= MAX_WHEEL_BYTES
        ):
            raise BundleError(f"{source}: malformed entry for {wheel.name!r:.60}")
    if len({w.name for w in wheels}) != len(wheels) or list(wheels) != sorted(wheels):
        raise BundleError(f"{source}: wheels must be sorted by name, each project once")
    lock = Lock(wheels, requirements_sha256, platform)
    if lock.size > MAX_LAYER_BYTES:
        raise BundleError(f"{source}: the wheels total {lock.size} bytes, over {MAX_LAYER_BYTES}")
    return lock


def read_lock(code_dir: Path) -> Lock | None:
    """The lock of an extracted function, or None when it has no dependencies."""
    path = Path(code_dir) / LOCK_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return parse_lock(data, source=str(path))


def lock_in_tar(tar_bytes: bytes) -> Lock | None:
    """The lock inside a verified bundle's tar (the anchor checks its wheels are there)."""
    import io

    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        try:
            member = tar.getmember(LOCK_FILE)
        except KeyError:
            return None
        extracted = tar.extractfile(member)
        if extracted is None:
            raise BundleError(f"{LOCK_FILE} is not a regular file")
        return parse_lock(extracted.read(MAX_LOCK_BYTES + 1))
