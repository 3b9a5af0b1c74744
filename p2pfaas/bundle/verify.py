"""Verifying a signed bundle before anything of it touches the disk.

A bundle is treated as hostile: its size, SHA-256 and signature (and owner, if the caller names
one) are checked first, then the archive is decompressed under a cap (decompression bombs) and
every tar member's header is checked before any data is read: only regular files and directories
with relative, `..`-free, unique names, within the member-count and size caps. The archived
`p2pfaas.toml` must equal the signed manifest.

This module writes nothing; extraction is in `bundle_cache.py`, packing in `bundle.py`.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zlib

from p2pfaas import signing
from p2pfaas.bundle.manifest import MANIFEST_FILE, parse_manifest, validate_manifest
from p2pfaas.errors import BundleError, SignatureError
from p2pfaas.messages import Bundle, Manifest

MAX_FILES = 1000
MAX_UNCOMPRESSED_BYTES = 64 * 1024 * 1024
# The tar stream adds a 512-byte header, padding and perhaps a PAX record per member; 4 KiB each is
# ample for sane paths, and pack_directory checks its own output against the same cap.
MAX_TAR_BYTES = MAX_UNCOMPRESSED_BYTES + MAX_FILES * 4096 + tarfile.RECORDSIZE
# Written into an extracted tree just before its atomic rename, so its presence means "complete".
DIGEST_MARKER = ".p2pfaas-digest"


def verify_bundle(bundle: Bundle, *, expected_digest: str | None = None, owner: bytes | None = None) -> None:
    """Raise unless `bundle` is intact, signed (by `owner`, if given) and safe to extract.

    `SignatureError` for a bad signature or another owner; `BundleError` (or `ManifestError`) for
    everything else, with the reason.
    """
    verified_tar(bundle, expected_digest=expected_digest, owner=owner)


def verified_tar(bundle: Bundle, *, expected_digest: str | None = None, owner: bytes | None = None) -> bytes:
    """Verify `bundle` and return its decompressed tar stream."""
    header = bundle.header
    if expected_digest is not None and header.digest != expected_digest:
        raise BundleError(f"bundle is {header.digest}, not the expected {expected_digest}")
    signer = signing.verify(header)
    if owner is not None and signer.raw != owner:
        raise SignatureError(f"bundle {header.digest[:12]} is signed by {signer.key_id[:12]}, not its owner")
    if len(bundle.archive) != header.size_bytes:
        raise BundleError(f"archive is {len(bundle.archive)} bytes but its header says {header.size_bytes}")
    actual = hashlib.sha256(bundle.archive).hexdigest()
    if actual != header.digest:
        raise BundleError(f"archive SHA-256 is {actual}, not the signed {header.digest}")
    validate_manifest(header.manifest)
    tar_bytes = _gunzip(bundle.archive)
    inside = _check_members(tar_bytes)
    if inside != header.manifest:
        raise BundleError(f"the archive's {MANIFEST_FILE} does not match the signed manifest")
    return tar_bytes


def _gunzip(archive: bytes) -> bytes:
    # Bounded decompression: a few MiB of zeros can inflate to gigabytes (a decompression bomb).
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
    try:
        data = inflate.decompress(archive, MAX_TAR_BYTES + 1)
    except zlib.error as exc:
        raise BundleError(f"archive is not valid gzip: {exc}") from None
    if len(data) > MAX_TAR_BYTES or inflate.unconsumed_tail:
        raise BundleError(f"archive inflates to more than {MAX_TAR_BYTES} bytes")
    if not inflate.eof:
        raise BundleError("archive is truncated: the gzip stream does not end")
    if inflate.unused_data:  # a second gzip member would be a second, unchecked archive
        raise BundleError(f"archive has {len(inflate.unused_data)} bytes after the gzip stream")
    return data


def _check_members(tar_bytes: bytes) -> Manifest:
    """Check every member's header before reading any data; return the archived manifest."""
    names: set[str] = set()
    file_names: set[str] = set()
    implied_dirs: set[str] = set()
    total_bytes = 0
    manifest_member: tarfile.TarInfo | None = None
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            while (member := tar.next()) is not None:
                _check_member(member)
                name = member.name
                if len(names) >= MAX_FILES:
                    raise BundleError(f"archive has more than {MAX_FILES} members")
                total_bytes += member.size
                if total_bytes > MAX_UNCOMPRESSED_BYTES:
                    raise BundleError(f"archive members declare more than {MAX_UNCOMPRESSED_BYTES} bytes")
                if member.offset_data + member.size > len(tar_bytes):
                    raise BundleError(f"archive is truncated inside {name!r}")
                # Duplicates and file/directory clashes would make what is extracted differ from
                # what was checked (the last copy of a name wins on disk).
                if name in names or (member.isreg() and name in implied_dirs):
                    raise BundleError(f"archive member {name!r} appears twice")
                parts = name.split("/")
                for i in range(1, len(parts)):
                    parent = "/".join(parts[:i])
                    if parent in file_names:
                        raise BundleError(f"archive member {name!r} is inside the file {parent!r}")
                    implied_dirs.add(parent)
                names.add(name)
                if member.isreg():
                    file_names.add(name)
                    if name == MANIFEST_FILE:
                        manifest_member = member
            if manifest_member is None:
                raise BundleError(f"archive has no {MANIFEST_FILE} at its top level")
            reader = tar.extractfile(manifest_member)
            assert reader is not None  # extractfile returns None only for non-regular members
            return parse_manifest(reader.read(), source=f"archive {MANIFEST_FILE}")
    except BundleError:
        raise
    except (tarfile.TarError, EOFError, ValueError, UnicodeError, OverflowError) as exc:
        raise BundleError(f"archive is not a valid tar stream: {type(exc).__name__}: {exc}") from None


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if member.issym() or member.islnk():
        raise BundleError(f"archive member {name!r} is a link (to {member.linkname!r}); links are refused")
    if member.isdev() or not (member.isreg() or member.isdir()) or member.issparse():
        raise BundleError(f"archive member {name!r} has type {member.type!r}; only files and directories")
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise BundleError(f"archive member name {name!r} is absolute or malformed")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise BundleError(f"archive member name {name!r} has an empty, '.' or '..' component")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BundleError(f"archive member name {name!r} is not valid UTF-8") from None
    if name == DIGEST_MARKER:  # reserved: its presence marks a completely extracted tree
        raise BundleError(f"archive member name {name!r} is reserved")
    if not 0 <= member.size <= MAX_UNCOMPRESSED_BYTES:
        raise BundleError(f"archive member {name!r} declares {member.size} bytes")
