"""Packing a function directory into a signed, deterministic bundle.

A bundle is a gzipped tar of a function directory (its `p2pfaas.toml` included) plus a
`BundleHeader` binding the manifest to the archive's SHA-256, signed by the lessee. Packing is
deterministic: sorted names, zeroed owners and times, modes reduced to 0o644/0o755 and a fixed gzip
header, so the same directory gives the same bytes and the same address (given the same zlib:
another deflate implementation may compress differently, still validly). Links, devices, sockets
and fifos are refused rather than followed or skipped.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tarfile
import zlib
from pathlib import Path

from p2pfaas import signing
from p2pfaas.bundle.manifest import (
    MANIFEST_FILE,
    parse_manifest,
)
from p2pfaas.bundle.verify import (
    DIGEST_MARKER,
    MAX_FILES,
    MAX_TAR_BYTES,
    MAX_UNCOMPRESSED_BYTES,
)
from p2pfaas.errors import BundleError, ManifestError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import MAX_ARCHIVE_BYTES, Bundle, BundleHeader, Manifest

__all__ = ["make_bundle", "pack_directory"]

_SKIPPED_DIRS = frozenset({"__pycache__", ".git"})
OWNER_MARKER = ".p2pfaas-owner"  # in every signed bundle: its owner's key id (see `make_bundle`)
_SKIPPED_FILES = frozenset({".DS_Store", DIGEST_MARKER, OWNER_MARKER})


# --- packing ------------------------------------------------------------------------------------


def pack_directory(directory: Path, *, owner_key_id: str = "") -> tuple[Manifest, bytes]:
    """Archive `directory` deterministically; return its manifest and the tar.gz bytes. With
    `owner_key_id`, the archive also holds it (`OWNER_MARKER`), so two owners' bundles of the same
    code have two addresses.

    Raises `BundleError` for symlinks, devices, sockets or fifos (naming the path), for a directory
    over the caps, and `ManifestError` for a missing or invalid manifest.
    """
    root = Path(directory)
    if not root.is_dir():
        raise BundleError(f"{root}: not a directory")
    files = _collect_files(root)
    buffer = io.BytesIO()
    manifest: Manifest | None = None
    total_bytes = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if owner_key_id:
            _add(tar, OWNER_MARKER, owner_key_id.encode(), executable=False)
        for name, path, executable in files:
            data = _read_regular(path, limit=MAX_UNCOMPRESSED_BYTES - total_bytes)
            total_bytes += len(data)
            if name == MANIFEST_FILE:
                manifest = parse_manifest(data, source=str(path))
            _add(tar, name, data, executable=executable)
    if manifest is None:
        raise ManifestError(f"{root}: no manifest; a function directory needs a {MANIFEST_FILE}")
    tar_bytes = buffer.getvalue()
    if len(tar_bytes) > MAX_TAR_BYTES:
        raise BundleError(f"{root}: tar stream of {len(tar_bytes)} bytes is over {MAX_TAR_BYTES}")
    archive = _gzip(tar_bytes)
    if len(archive) > MAX_ARCHIVE_BYTES:
        raise BundleError(f"{root}: archive of {len(archive)} bytes is over {MAX_ARCHIVE_BYTES}")
    return manifest, archive


def _add(tar: tarfile.TarFile, name: str, data: bytes, *, executable: bool) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755 if executable else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _collect_files(root: Path) -> list[tuple[str, Path, bool]]:
    """(archive name, path, executable) for every file to pack, sorted by name."""
    found: list[tuple[str, Path, bool]] = []
    total_bytes = 0
    pending = [(root, "")]  # an explicit stack: deep trees must not hit the recursion limit
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as scan:
                entries = [(entry, entry.stat(follow_symlinks=False)) for entry in scan]
        except OSError as exc:
            raise BundleError(f"{directory}: cannot list: {exc.strerror}") from None
        for entry, st in entries:
            path = Path(entry.path)
            name = prefix + entry.name
            if stat.S_ISDIR(st.st_mode):
                if entry.name not in _SKIPPED_DIRS:
                    _check_portable(path, entry.name)
                    pending.append((path, name + "/"))
            elif stat.S_ISREG(st.st_mode):
                if entry.name in _SKIPPED_FILES or entry.name.endswith(".pyc"):
                    continue
                _check_portable(path, entry.name)
                found.append((name, path, bool(st.st_mode & 0o111)))
                total_bytes += st.st_size
                if len(found) > MAX_FILES:
                    raise BundleError(f"{root}: more than {MAX_FILES} files")
                if total_bytes > MAX_UNCOMPRESSED_BYTES:
                    raise BundleError(f"{root}: more than {MAX_UNCOMPRESSED_BYTES} bytes of files")
            else:  # a link could smuggle in any file on the packer's machine, so refuse it
                kind = _kind(st.st_mode)
                raise BundleError(f"{path}: {kind} cannot be bundled; only files and directories")
    found.sort()
    return found


def _check_portable(path: Path, name: str) -> None:
    # Names the verifier would refuse are refused here, so a packed bundle always verifies.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BundleError(f"{path}: file name is not valid UTF-8") from None
    if "\\" in name:
        raise BundleError(f"{path}: a backslash in a file name means a directory on Windows")


def _read_regular(path: Path, *, limit: int) -> bytes:
    # O_NOFOLLOW and fstat close the window in which a checked file is swapped for a link.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BundleError(f"{path}: changed into a non-regular file while packing")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise BundleError(f"{path}: the directory grew over {MAX_UNCOMPRESSED_BYTES} bytes while packing")
    return data


def _kind(mode: int) -> str:
    kinds = {
        stat.S_IFLNK: "a symbolic link",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFIFO: "a fifo",
        stat.S_IFSOCK: "a socket",
    }
    return kinds.get(stat.S_IFMT(mode), f"a special file (mode {mode:o})")


def _gzip(data: bytes) -> bytes:
    # Hand-made header: gzip.compress(mtime=0) stamps the OS byte of the platform's zlib build, which
    # would give macOS and Linux different addresses for the same directory. Flags 0: no file name.
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(data) + deflate.flush()
    header = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x02\xff"  # mtime 0, best compression, OS unknown
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def make_bundle(directory: Path, keys: KeyPair) -> Bundle:
    """Pack `directory` and sign its manifest and digest with the lessee's `keys`."""
    # The owner inside the archive: a second lessee deploying byte-identical code gets a bundle of
    # its own (the anchor stores one owner per address, and nodes run a bundle for its owner).
    manifest, archive = pack_directory(directory, owner_key_id=keys.key_id)
    header = BundleHeader(
        manifest=manifest,
        digest=hashlib.sha256(archive).hexdigest(),
        size_bytes=len(archive),
        signer=b"",
        signature=b"",
    )
    return Bundle(header=signing.sign(header, keys), archive=archive)
