"""Extracting verified bundles, and the node's on-disk cache of them.

`extract_bundle` verifies a bundle, unpacks it into a fresh sibling directory and renames that into
place, so a tree at the destination is always complete; a digest marker inside says which bundle
it holds. `BundleCache` keeps extracted trees and the signed bundles by digest under one root.

The cache is size-capped: `evict_over_cap` removes least recently used bundles (tree and archive)
until the total is under `max_bytes`, sparing the ones the caller pins (those that run or are warm).
This module does not fetch bundles (the node service does) or run functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from pathlib import Path

from p2pfaas import codec
from p2pfaas.bundle.verify import DIGEST_MARKER, verified_tar
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
    # Whether it exists first, then what it holds: a renamed tree appears whole, marker included, so
    # this order has no window (asked the other way round, another extraction's rename could land
    # between the two questions and a bundle being extracted twice was refused).
    if os.path.lexists(destination):
        if _holds(destination, digest):
            return destination
        raise BundleError(f"{destination} exists and does not hold bundle {digest[:12]}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            # Belt and braces: the "data" filter refuses what verification refused already. Python
            # before 3.11.4 (Debian 12's 3.11.2, the node image's) has no filters: verification
            # (`bundle.verify._check_members`: regular files and directories, relative, no `..`)
            # is then the only gate, as it is the first one everywhere.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:  # pragma: no cover - only on Python < 3.11.4
                members = tar.getmembers()  # every one was checked before; owned by us, not by the tar
                for member in members:
                    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
                    member.mode &= 0o755
                tar.extractall(staging, members=members)
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


def _tree_bytes(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


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
    Recency of use is kept in memory (`touch`), seeded from the archives' mtimes after a restart.
    """

    def __init__(self, root: Path, *, max_bytes: int = 0) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes  # 0: unbounded
        self._locks: dict[str, _DigestLock] = {}
        self._uses = itertools.count(1)
        self._last_use: dict[str, int] = {}

    def touch(self, digest: str) -> None:
        """Note that `digest` was just used (cheap: called on every invocation)."""
        self._last_use[digest] = next(self._uses)

    def digests(self) -> list[str]:
        """The digests of every complete bundle held."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return [name for name in names if _HEX_DIGEST.fullmatch(name) and _holds(self.root / name, name)]

    def archive_bytes(self, digest: str) -> bytes | None:
        """The stored encoded bundle of `digest` as is (to serve to peers, who verify it), or None."""
        if not _HEX_DIGEST.fullmatch(digest) or self.path_for(digest) is None:
            return None
        try:
            return (self.root / f"{digest}.bundle").read_bytes()
        except OSError:
            return None

    def size_bytes(self) -> int:
        """Bytes on disk of every bundle (archives and extracted trees). Blocking."""
        return sum(size for _, size in self._entries())

    def _entries(self) -> list[tuple[str, int]]:
        entries = []
        for digest in self.digests():
            size = _tree_bytes(self.root / digest)
            with contextlib.suppress(OSError):
                size += os.stat(self.root / f"{digest}.bundle").st_size
            entries.append((digest, size))
        return entries

    def evict_over_cap(self, pinned: Collection[str] = ()) -> list[str]:
        """Remove least recently used bundles not in `pinned` until under `max_bytes`; return their
        digests. Blocking (walks the disk): run it in a thread."""
        if not self.max_bytes:
            return []
        entries = self._entries()
        total = sum(size for _, size in entries)
        evicted: list[str] = []
        for digest, size in sorted(entries, key=lambda entry: self._recency(entry[0])):
            if total <= self.max_bytes:
                break
            if digest in pinned:
                continue
            self._remove(digest)
            total -= size
            evicted.append(digest)
        return evicted

    def _recency(self, digest: str) -> tuple[int, float]:
        used = self._last_use.get(digest, 0)
        try:
            mtime = os.stat(self.root / f"{digest}.bundle").st_mtime
        except OSError:
            mtime = 0.0
        return used, mtime

    def remove(self, digest: str) -> bool:
        """Drop `digest`'s archive and tree (its function was removed); whether it was held."""
        if not _HEX_DIGEST.fullmatch(digest):  # never build a path from a malformed string
            return False
        held = self.path_for(digest) is not None or (self.root / f"{digest}.bundle").exists()
        if held:
            self._remove(digest)
        return held

    def _remove(self, digest: str) -> None:
        self._last_use.pop(digest, None)
        tree = self.root / digest
        # The marker goes first, so a half-removed tree is never taken for a complete one.
        with contextlib.suppress(OSError):
            os.unlink(tree / DIGEST_MARKER)
        shutil.rmtree(tree, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(self.root / f"{digest}.bundle")

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
        return len(self.digests())

    async def store(self, bundle: Bundle) -> Path:
        """Verify and extract `bundle` (in a worker thread); return its tree. Raises like `verify_bundle`."""
        async with self._locked(bundle.header.digest):
            path = await asyncio.to_thread(self._store_blocking, bundle)
        self.touch(bundle.header.digest)
        return path

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
