"""Extracting verified bundles, and the node's on-disk cache of them.

`extract_bundle` verifies a bundle, unpacks it into a fresh sibling directory and renames that into
place, so a tree at the destination is always complete; a digest marker inside says which bundle
it holds. `BundleCache` keeps extracted trees and the signed bundles by digest under one root.

This module does not fetch bundles from peers, run functions, or evict anything yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from p2pfaas import codec
from p2pfaas.bundle_verify import DIGEST_MARKER, verified_tar
from p2pfaas.errors import BundleError, DecodeError
from p2pfaas.messages import Bundle

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def extract_bundle(bundle: Bundle, destination: Path) -> Path:
    """Verify `bundle` and extract it atomically to `destination`; return `destination`.

    If `destination` already holds this bundle (its digest marker matches) it is returned as is; if
    it holds anything else, `BundleError`. Concurrent extractions of one bundle are safe: one rename
    wins and the others return its tree.
    """
    tar_bytes = verified_tar(bundle)
    digest = bundle.header.digest
    destination = Path(destination)
    if _holds(destination, digest):
        return destination
    if os.path.lexists(destination):
        raise BundleError(f"{destination} exists and does not hold bundle {digest[:12]}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            # Belt and braces: the "data" filter refuses what verification refused already.
            tar.extractall(staging, filter="data")
        (staging / DIGEST_MARKER).write_text(digest + "\n", encoding="ascii")
        _make_world_readable(staging)
        try:
            os.rename(staging, destination)
        except OSError as exc:
            if _holds(destination, digest):
                return destination  # another extraction of the same bundle won the race
            raise BundleError(f"cannot move the extracted bundle to {destination}: {exc.strerror}") from None
    except tarfile.TarError as exc:
        raise BundleError(f"extraction refused: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a successful rename there is nothing left
    return destination


def _holds(directory: Path, digest: str) -> bool:
    try:
        return (directory / DIGEST_MARKER).read_text(encoding="ascii").strip() == digest
    except (OSError, UnicodeDecodeError):
        return False


def _make_world_readable(root: Path) -> None:
    # The function runs as an unprivileged container user (uid 65534) that owns none of these files.
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for file in files:
            path = os.path.join(directory, file)
            os.chmod(path, 0o755 if os.lstat(path).st_mode & stat.S_IXUSR else 0o644)


# --- the node's cache ---------------------------------------------------------------------------


@dataclass
class _DigestLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class BundleCache:
    """Verified, extracted bundles on disk, by digest; driven by a node fetching bundles to run.

    `root/<digest>/` is the extracted tree (complete exactly when it holds the digest marker) and
    `root/<digest>.bundle` the encoded signed bundle, kept so the node can serve it to peers.
    Eviction is not done yet: the cache only grows.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._locks: dict[str, _DigestLock] = {}

    def path_for(self, digest: str) -> Path | None:
        """The extracted tree of `digest`, or None if it is not (completely) cached."""
        if not _HEX_DIGEST.fullmatch(digest):  # never build a path from a malformed remote string
            return None
        path = self.root / digest
        return path if _holds(path, digest) else None

    def archive(self, digest: str) -> Bundle | None:
        """The stored signed bundle of `digest`, or None. It was verified when stored."""
        if not _HEX_DIGEST.fullmatch(digest):
            return None
        try:
            bundle = codec.decode_as(Bundle, (self.root / f"{digest}.bundle").read_bytes())
        except (OSError, DecodeError):  # absent or damaged on disk: the node fetches it again
            return None
        return bundle if bundle.header.digest == digest else None

    def __len__(self) -> int:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return 0
        return sum(1 for name in names if _HEX_DIGEST.fullmatch(name) and _holds(self.root / name, name))

    async def store(self, bundle: Bundle) -> Path:
        """Verify and extract `bundle` (in a worker thread); return its tree. Raises like `verify_bundle`."""
        async with self._locked(bundle.header.digest):
            return await asyncio.to_thread(self._store_blocking, bundle)

    @contextlib.asynccontextmanager
    async def _locked(self, digest: str) -> AsyncIterator[None]:
        # One store per digest at a time, so concurrent requests for a new function unpack it once.
        # If the holder is cancelled its thread runs on unlocked; the renames below tolerate that race.
        entry = self._locks.get(digest)
        if entry is None:
            entry = self._locks[digest] = _DigestLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[digest]

    def _store_blocking(self, bundle: Bundle) -> Path:
        digest = bundle.header.digest
        # Verifies even when the tree is there: a caller must never get a path for a forged header.
        tree = extract_bundle(bundle, self.root / digest)
        target = self.root / f"{digest}.bundle"
        if self.archive(digest) is None:
            fd, temporary = tempfile.mkstemp(prefix=f".{digest}.", suffix=".tmp", dir=self.root)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(codec.encode(bundle))
                os.chmod(temporary, 0o644)
                os.replace(temporary, target)  # readers see the old file or the whole new one
            except BaseException:
                os.unlink(temporary)
                raise
        return tree
