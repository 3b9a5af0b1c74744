"""The node's dependency layers: the wheels of a function's lock, fetched, verified, unpacked once.

A verified bundle may carry `p2pfaas.lock` (`p2pfaas.bundle.lock`): the wheels it needs, each
pinned by SHA-256 in a file the lessee signed. `LayerCache.ensure(lock)` returns a read-only
directory holding those wheels unpacked (what pip would install into site-packages), which the
executor mounts read-only into the function's container (`FunctionSpec.deps_dir`): functions with
the same lock share it. The first call fetches every wheel (`fetch_wheel`, the anchor's
`GET /v1/wheels/{sha256}`), checks its size and hash against the lock before keeping a byte, unpacks
all of them into a fresh directory and renames it into place, so a layer on disk is always whole;
concurrent first calls share one fetch. A layer over `max_layer_bytes` (the lock says its size) is
refused before anything is fetched. The wheels stay beside the unpacked tree (`wheel_file`), so the
node serves them to its peers (`GET /v1/wheels/{sha256}`): `fetch_wheel` is given the layer's digest
too, and `node/wheel_source.py` asks the peers that announced the layer before the anchor;
`on_cached`/`on_evicted` tell the DHT what this node holds.

Unpacking trusts nothing in the wheel either: absolute names, `..`, links and special files are
refused, and the unpacked size is bounded. The cache keeps layers under `max_bytes`, evicting the
least recently used ones that no warm or running function uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import lzma
import os
import shutil
import stat
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path, PurePosixPath

import aiohttp

from p2pfaas import rpc
from p2pfaas.bundle.lock import Lock, LockedWheel
from p2pfaas.errors import BundleError
from p2pfaas.lifecycle import TaskSet

__all__ = ["LayerCache", "fetch_wheel", "unpack_wheel"]

log = logging.getLogger(__name__)

SITE = "site"
UNPACK_FACTOR = 8  # a layer may unpack to this many times its wheels' size, no more
MAX_MEMBERS = 100_000
ENTRY_BYTES = 4096  # what each file and directory is charged beyond its bytes (a block, an inode)
MAX_DEPTH = 32  # path components of a member
MAX_NAME = 200  # bytes of one component
FETCHES_AT_ONCE = 2  # layers fetched at once by one node
RETRY_FAILED_S = 60.0  # a layer whose fetch failed is refused this long before it is fetched again
IN_USE_GRACE_S = 600.0  # a layer used this recently is not evicted (a call may be about to mount it)
TOUCH_EVERY_S = 60.0  # how often a layer in use has its mtime updated (not on every call)

WHEELS = "wheels"  # beside SITE: the layer's wheels as fetched, `<sha256>.whl`, served to peers
FetchWheel = Callable[[LockedWheel, str], Awaitable[bytes]]  # (wheel, its layer's digest) -> its bytes
FETCH_TIMEOUT_S = 300.0


async def fetch_wheel(
    session: aiohttp.ClientSession, base_url: str, wheel: LockedWheel, layer_digest: str = ""
) -> bytes:
    """`wheel`'s bytes from `base_url`'s `GET /v1/wheels/{sha256}` (the anchor's), never more than the
    lock says; `layer_digest` is not needed there."""
    url = f"{base_url}/v1/wheels/{wheel.sha256}"
    return await rpc.request_bytes(session, "GET", url, timeout_s=FETCH_TIMEOUT_S, max_bytes=wheel.size)


class LayerCache:
    """Unpacked dependency layers under `root`, by layer digest."""

    def __init__(
        self,
        root: Path,
        *,
        fetch_wheel: FetchWheel,
        max_bytes: int = 0,
        max_layer_bytes: int = 0,
        pinned: Callable[[], Collection[str]] = frozenset,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = Path(root)
        self.fetch_wheel = fetch_wheel
        self.max_bytes = max_bytes  # 0: unbounded
        self.max_layer_bytes = max_layer_bytes or max_bytes  # the wheels of one lock, compressed
        self.pinned = pinned  # the layers mounted now (asked at each eviction, not before a fetch)
        self.clock = clock
        self.fetched_bytes = 0  # wheel bytes fetched so far (for tests and benchmarks)
        self.on_cached: Callable[[str], None] | None = None  # a layer is here now (the DHT announces it)
        self.on_evicted: Callable[[str], None] | None = None  # a layer is gone (stop announcing it)
        self._fetches: dict[str, asyncio.Task[Path]] = {}
        self._fetch_tasks = TaskSet()  # a fetch outlives the call that started it; `aclose` ends them
        self._failed: dict[str, tuple[float, BaseException]] = {}  # layer -> (when, why): not refetched
        self._fetching = asyncio.Semaphore(FETCHES_AT_ONCE)
        self._disk = threading.Lock()  # installs and evictions, one at a time
        self._touched: dict[str, float] = {}  # layer -> `clock()` of its last mtime update
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".*-*"):  # staging directories of a run that crashed
            _remove(stale)
        # The layers on disk, kept in memory: this process alone installs and evicts under `root`.
        self._installed = {
            p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / SITE).is_dir()
        }
        self._wheels = {  # sha256 -> the layer whose wheels directory holds it
            w.stem: layer for layer in self._installed for w in (self.root / layer / WHEELS).glob("*.whl")
        }

    def installed(self) -> set[str]:
        """The layers on disk now (announced as this node's after a restart)."""
        return set(self._installed)

    def wheel_file(self, sha256: str) -> Path | None:
        """The wheel of that hash, if a layer here holds it (for a peer's `GET /v1/wheels/{sha256}`)."""
        layer = self._wheels.get(sha256)
        path = None if layer is None else self.root / layer / WHEELS / f"{sha256}.whl"
        return path if path is not None and path.is_file() else None

    def path_for(self, layer_digest: str) -> Path | None:
        return self.root / layer_digest / SITE if layer_digest in self._installed else None

    def used(self, layer_digest: str) -> bool:
        """A call is about to run on this layer: it is recently used (evicted last, and never
        within `IN_USE_GRACE_S`; its mtime says so, updated at most every `TOUCH_EVERY_S`). False
        when it is not here (evicted)."""
        if layer_digest not in self._installed:
            return False
        now = self.clock()
        if now - self._touched.get(layer_digest, -TOUCH_EVERY_S) >= TOUCH_EVERY_S:
            self._touched[layer_digest] = now
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.root / layer_digest)
        return True

    async def ensure(self, lock: Lock) -> Path:
        """The unpacked layer of `lock` (fetched the first time); raises BundleError when it is over
        this node's limit or its wheels are not what the lock says, NotFound/Unreachable from the
        fetch. A layer whose fetch failed is not fetched again for `RETRY_FAILED_S`."""
        digest = lock.layer_digest
        if self.used(digest):
            return self.root / digest / SITE
        if self.max_layer_bytes and lock.size > self.max_layer_bytes:
            raise BundleError(
                f"the function's dependency layer is {lock.size >> 20} MiB of wheels; this node takes "
                f"layers up to {self.max_layer_bytes >> 20} MiB"
            )
        failed = self._failed.get(digest)
        if failed is not None and self.clock() - failed[0] < RETRY_FAILED_S:
            raise BundleError(f"dependency layer {digest[:12]} failed here recently: {failed[1]}")
        task = self._fetches.get(digest)
        if task is None:
            task = self._fetch_tasks.spawn(self._fetch(lock), name=f"fetch layer {digest[:12]}")
            self._fetches[digest] = task
            task.add_done_callback(lambda done: self._fetch_done(digest, done))
        site = await asyncio.shield(task)
        for evicted in await asyncio.to_thread(self.evict_over_cap, {digest}):
            if self.on_evicted is not None:
                self.on_evicted(evicted)
        return site

    async def aclose(self) -> None:
        """Cancel the layer fetches still running (their callers wait on them no more)."""
        await self._fetch_tasks.cancel()

    def _fetch_done(self, digest: str, done: asyncio.Task[Path]) -> None:
        self._fetches.pop(digest, None)
        if not done.cancelled() and done.exception() is not None:
            self._failed[digest] = (self.clock(), done.exception())  # type: ignore[assignment]
            while len(self._failed) > 1024:
                del self._failed[next(iter(self._failed))]

    async def _fetch(self, lock: Lock) -> Path:
        async with self._fetching:  # a few layers at a time, whatever the lessees ask
            return await self._fetch_now(lock)

    async def _fetch_now(self, lock: Lock) -> Path:
        wheels: list[tuple[LockedWheel, bytes]] = []
        for wheel in lock.wheels:
            data = await self.fetch_wheel(wheel, lock.layer_digest)
            if len(data) != wheel.size or hashlib.sha256(data).hexdigest() != wheel.sha256:
                raise BundleError(f"{wheel.filename}: the bytes fetched are not the wheel the lock names")
            self.fetched_bytes += len(data)
            wheels.append((wheel, data))
        limit = UNPACK_FACTOR * max(lock.size, 1 << 20)
        site = await asyncio.to_thread(self._install, lock.layer_digest, wheels, limit)
        if self.on_cached is not None:
            self.on_cached(lock.layer_digest)
        return site

    def _install(self, digest: str, wheels: list[tuple[LockedWheel, bytes]], limit: int) -> Path:
        with self._disk:
            return self._install_locked(digest, wheels, limit)

    def _install_locked(self, digest: str, wheels: list[tuple[LockedWheel, bytes]], limit: int) -> Path:
        final = self.root / digest
        if (final / SITE).is_dir():
            self._installed.add(digest)
            return final / SITE
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=self.root))
        try:
            used = 0
            (staging / WHEELS).mkdir()
            for wheel, data in wheels:
                used += unpack_wheel(data, staging / SITE, limit=limit - used, name=wheel.filename)
                (staging / WHEELS / f"{wheel.sha256}.whl").write_bytes(data)
            _read_only(staging)
            staging.rename(final)
            self._installed.add(digest)
            self._wheels.update({wheel.sha256: digest for wheel, _ in wheels})
        except BaseException:
            _remove(staging)
            raise
        log.info("dependency layer %s: %d wheels, %d bytes unpacked", digest[:12], len(wheels), used)
        return final / SITE

    def evict_over_cap(self, pinned: Collection[str] = ()) -> list[str]:
        """Remove least recently used layers until the total is under `max_bytes`, sparing `pinned`,
        the ones mounted now (`self.pinned()`, asked here) and any used in the last
        `IN_USE_GRACE_S` (a call admitted but not started yet)."""
        if not self.max_bytes:
            return []
        with self._disk:
            keep = {*pinned, *self.pinned()}
            layers = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
            sizes = {p: _tree_bytes(p) for p in layers}
            return self._evict(layers, sizes, keep)

    def _evict(self, layers: list[Path], sizes: dict[Path, int], keep: set[str]) -> list[str]:
        total = sum(sizes.values())
        evicted = []
        recent = time.time() - IN_USE_GRACE_S
        for path in sorted(layers, key=_mtime):
            if total <= self.max_bytes:
                break
            if path.name in keep or _mtime(path) > recent:
                continue
            self._installed.discard(path.name)
            self._touched.pop(path.name, None)
            self._wheels = {sha: layer for sha, layer in self._wheels.items() if layer != path.name}
            _remove(path)
            total -= sizes[path]
            evicted.append(path.name)
        return evicted


# What zipfile raises for a malformed archive (its own, and those of the streams it reads).
ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError)


def unpack_wheel(data: bytes, site: Path, *, limit: int, name: str = "wheel") -> int:
    """Unpack the wheel `data` into `site` as pip would install it (purelib and platlib; scripts,
    headers and data dropped); returns the bytes written. Raises BundleError for a wheel that is
    not a zip, names a path outside `site`, holds a link or special file, or unpacks past `limit`."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except ZIP_ERRORS as error:
        # NotImplementedError: a "version needed to extract" zipfile does not know (found by fuzzing)
        raise BundleError(f"{name}: not a wheel: {type(error).__name__}: {error}") from None
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise BundleError(f"{name}: more than {MAX_MEMBERS} files")
    declared = sum(m.file_size + ENTRY_BYTES for m in members)
    if declared > limit:
        raise BundleError(f"{name}: unpacks to {declared} bytes, over the layer's limit of {limit}")
    try:
        return _unpack(archive, members, site, limit=limit, name=name)
    except BundleError:
        raise
    except (*ZIP_ERRORS, zlib.error, lzma.LZMAError) as error:  # a member's data does not inflate (fuzzing)
        raise BundleError(f"{name}: cannot unpack: {type(error).__name__}: {error}") from None


def _unpack(
    archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], site: Path, *, limit: int, name: str
) -> int:
    written = 0
    for member in members:
        target = _target(member.filename, name)
        if target is None:
            continue
        mode = member.external_attr >> 16
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: a zip that says nothing
            raise BundleError(f"{name}: {member.filename[:100]!r} is a link or a special file")
        path = site.joinpath(*target.parts)
        written += ENTRY_BYTES * len(target.parts)  # directories cost disk too (and inodes)
        if written > limit:
            raise BundleError(f"{name}: unpacks past the layer's limit of {limit} bytes")
        if member.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(member) as source, path.open("xb") as out:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > limit:  # a size the zip lied about
                        raise BundleError(f"{name}: unpacks past the layer's limit of {limit} bytes")
                    out.write(chunk)
        except FileExistsError:
            raise BundleError(f"{name}: {member.filename[:100]!r} is in the layer twice") from None
        if mode & 0o111:
            path.chmod(0o755)
    return written


def _target(filename: str, name: str) -> PurePosixPath | None:
    """Where a wheel member goes under site-packages, None for what a node never installs."""
    path = PurePosixPath(filename)
    if "\\" in filename or path.is_absolute() or ".." in path.parts or not path.parts:
        raise BundleError(f"{name}: the member {filename[:100]!r} would land outside the layer")
    if len(path.parts) > MAX_DEPTH or any(len(part) > MAX_NAME for part in path.parts):
        raise BundleError(f"{name}: the member {filename[:100]!r} is nested too deep or named too long")
    top = path.parts[0]
    if top.endswith(".data"):  # name-version.data/{purelib,platlib,scripts,headers,data}/...
        if len(path.parts) > 2 and path.parts[1] in ("purelib", "platlib"):
            return PurePosixPath(*path.parts[2:])
        return None
    return path


def _read_only(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for file in files:
            path = Path(directory, file)
            path.chmod(0o555 if path.stat().st_mode & 0o111 else 0o444)
        Path(directory).chmod(0o555)


def _remove(root: Path) -> None:
    if not root.exists():
        return
    for directory, _, _ in os.walk(root):
        Path(directory).chmod(0o755)
    shutil.rmtree(root, ignore_errors=True)


def _tree_bytes(root: Path) -> int:
    """The disk a tree takes, directories included (a layer of empty directories is not free)."""
    total = 0
    for directory, _, files in os.walk(root):
        for entry in (directory, *(os.path.join(directory, f) for f in files)):
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(entry).st_blocks * 512
    return total


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
