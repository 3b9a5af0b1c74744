"""The anchor's registry store: lessee keys, function bundles and function names (the volunteer
nodes are `node_store.py`'s).

`RegistryStore` is the only code that queries the registry tables (`p2pfaas.db.schema`). Each method
is one transaction through `Database.run`, so it rides out deadlocks, lock timeouts and a database
restart, and each is idempotent, so a retry after a connection lost during COMMIT is harmless.
Database failures surface as `StorageError`; bad input as `Refused` (HTTP-like `status` set).

What it does not do: verify signatures, digests or manifests (the anchor app does that before it
calls in; `signed_manifest` is opaque bytes here), read a clock (every `now` is float seconds since
the Unix epoch, passed in), or cache anything (anchors are stateless apart from the database).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.db import Database
from p2pfaas.db.schema import bundles, functions, lessee_keys, revoked_bundles
from p2pfaas.db.upsert import insert_ignore, upsert
from p2pfaas.errors import NotFound, Refused, SignatureError
from p2pfaas.identity import node_id_of

__all__ = ["FunctionRow", "RegistryStore", "check_length", "key_id_of"]

T = TypeVar("T")

HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FunctionRow:
    """A lessee's function name and the bundle it currently points at."""

    name: str
    digest: str
    version: str
    runtime: str
    updated_at: float


class RegistryStore:
    """Registry queries over an open `Database`; driven by the anchor's HTTP handlers."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- lessee keys ----------------------------------------------------------------------------

    async def register_lessee_key(self, public_key: bytes, *, label: str, now: float) -> str:
        """Record a lessee's Ed25519 public key and return its key id (hex SHA-1 of the key).

        Registering a known key again changes nothing (the first label and time stay).
        """
        key_id = key_id_of(public_key)
        check_length("label", label, lessee_keys.c.label)
        row = {"key_id": key_id, "public_key": public_key, "label": label, "created_at": now}

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(insert_ignore(self._db.dialect, lessee_keys, row, key=["key_id"]))

        await self._db.run(work, what="register lessee key")
        return key_id

    async def lessee_key(self, key_id: str) -> bytes | None:
        """The public key registered under `key_id`, or None."""
        query = sa.select(lessee_keys.c.public_key).where(lessee_keys.c.key_id == key_id)
        return await self._scalar(query, what="look up lessee key")

    # --- bundles and function names -------------------------------------------------------------

    async def put_bundle(
        self,
        *,
        digest: str,
        owner_key_id: str,
        name: str,
        version: str,
        runtime: str,
        handler: str,
        memory_mb: int,
        timeout_s: float,
        deterministic: bool,
        signed_manifest: bytes,
        archive: bytes,
        now: float,
    ) -> None:
        """Store a verified bundle under its digest and point the owner's function `name` at it.

        Idempotent on the digest: a bundle already stored is not rewritten, but the name pointer
        still moves to it (so putting an older digest again rolls the function back).
        Refused (403) if the owner key is unknown; (409) if the digest is stored for another owner
        or name, or this name and version already hold other code (versions are immutable); (400)
        for a malformed digest or an over-long field; (413) if the database cannot take the archive
        in one statement (MySQL's max_allowed_packet).
        """
        if not HEX_DIGEST.fullmatch(digest):
            raise Refused(f"bundle digest must be 64 lowercase hex digits, got {digest[:80]!r}", status=400)
        if not self._db.fits_in_one_statement(archive, signed_manifest):
            raise Refused(
                f"bundle of {len(archive)} bytes is too large for this anchor's database", status=413
            )
        texts = {"name": name, "version": version, "runtime": runtime, "handler": handler}
        for field, value in texts.items():
            check_length(field, value, bundles.c[field])
        bundle = {
            "digest": digest,
            "owner_key_id": owner_key_id,
            "name": name,
            "version": version,
            "runtime": runtime,
            "handler": handler,
            "memory_mb": memory_mb,
            "timeout_s": timeout_s,
            "deterministic": deterministic,
            "signed_manifest": signed_manifest,
            "archive": archive,
            "size_bytes": len(archive),
            "created_at": now,
        }
        pointer = {"owner_key_id": owner_key_id, "name": name, "digest": digest, "updated_at": now}
        stored_as = sa.select(bundles.c.owner_key_id, bundles.c.name).where(bundles.c.digest == digest)

        async def work(connection: AsyncConnection) -> None:
            owner_known = await connection.scalar(
                sa.select(sa.literal(1)).where(lessee_keys.c.key_id == owner_key_id)
            )
            if owner_known is None:
                raise Refused(f"unknown lessee key {owner_key_id[:12]!r}: register it first", status=403)
            if await connection.scalar(sa.select(sa.literal(1)).where(revoked_bundles.c.digest == digest)):
                raise Refused(
                    f"bundle {digest[:12]} was removed with its function: deploy the code as a new version",
                    status=409,
                )
            # A plain read first, so a re-deploy does not ship the archive to the server again.
            existing = (await connection.execute(stored_as)).one_or_none()
            if existing is None:
                await connection.execute(insert_ignore(self._db.dialect, bundles, bundle, key=["digest"]))
                # A locking read sees a row that a concurrent transaction committed first.
                existing = (await connection.execute(stored_as.with_for_update())).one()
            if tuple(existing) != (owner_key_id, name):
                raise Refused(
                    f"bundle {digest[:12]} is already registered under another owner or name", status=409
                )
            # A version is immutable: the same name and version with other code is refused, so
            # `name@version` always means one bundle (read after our insert, in this transaction).
            other = await connection.scalar(
                sa.select(bundles.c.digest).where(
                    bundles.c.owner_key_id == owner_key_id,
                    bundles.c.name == name,
                    bundles.c.version == version,
                    bundles.c.digest != digest,
                )
            )
            if other is not None:
                raise Refused(
                    f"version {version} of {name} is already deployed with other code (bundle "
                    f"{other[:12]}): give the new code a new version",
                    status=409,
                )
            await connection.execute(
                upsert(
                    self._db.dialect,
                    functions,
                    pointer,
                    key=["owner_key_id", "name"],
                    update=["digest", "updated_at"],
                )
            )

        await self._db.run(work, what=f"put bundle {digest[:12]}")

    async def bundle_header(self, digest: str) -> bytes | None:
        """The bundle's signed manifest as it came off the wire, or None if unknown."""
        query = sa.select(bundles.c.signed_manifest).where(bundles.c.digest == digest)
        return await self._scalar(query, what="read bundle header")

    async def bundle_archive(self, digest: str) -> bytes | None:
        """The bundle's archive bytes, or None if unknown."""
        query = sa.select(bundles.c.archive).where(bundles.c.digest == digest)
        return await self._scalar(query, what="read bundle archive")

    async def resolve_function(self, owner_key_id: str, name: str, version: str = "") -> str | None:
        """The digest that the owner's function `name` currently points at (with `version`: that
        deployed version's, while the name exists), or None."""
        query = sa.select(functions.c.digest).where(
            functions.c.owner_key_id == owner_key_id, functions.c.name == name
        )
        if version:
            query = (
                sa.select(bundles.c.digest)
                .where(
                    bundles.c.owner_key_id == owner_key_id,
                    bundles.c.name == name,
                    bundles.c.version == version,
                    sa.exists(query),
                )
                .order_by(bundles.c.created_at.desc())
                .limit(1)
            )
        return await self._scalar(query, what="resolve function")

    async def list_functions(self, owner_key_id: str) -> list[FunctionRow]:
        """The owner's functions, by name."""
        query = (
            sa.select(
                functions.c.name,
                functions.c.digest,
                bundles.c.version,
                bundles.c.runtime,
                functions.c.updated_at,
            )
            .join(bundles, bundles.c.digest == functions.c.digest)
            .where(functions.c.owner_key_id == owner_key_id)
            .order_by(functions.c.name)
        )
        rows = await self._rows(query, what="list functions")
        return [FunctionRow(row.name, row.digest, row.version, row.runtime, row.updated_at) for row in rows]

    async def change_function(
        self, owner_key_id: str, name: str, version: str, *, issued_at: float, now: float
    ) -> str:
        """Point the owner's function `name` at its deployed `version` (the newest bundle of it), or
        with `version` "", remove the name. Returns the digest it now points at ("" when removed).
        NotFound for an unknown name or version; 409 for a change issued before the function's
        last change (a replay)."""

        async def work(connection: AsyncConnection) -> str:
            current = (
                await connection.execute(
                    sa.select(functions.c.digest, functions.c.updated_at)
                    .where(functions.c.owner_key_id == owner_key_id, functions.c.name == name)
                    .with_for_update()
                )
            ).one_or_none()
            if current is None:
                raise NotFound(f"you have no function named {name[:64]!r}")
            if issued_at <= current.updated_at:
                raise Refused(
                    f"this change of {name[:64]!r} was signed before its last change: sign a new one",
                    status=409,
                )
            where = (functions.c.owner_key_id == owner_key_id, functions.c.name == name)
            mine = (bundles.c.owner_key_id == owner_key_id, bundles.c.name == name)
            if not version:  # removed: its bundles are revoked, nodes drop them (`revoked_after`)
                await connection.execute(functions.delete().where(*where))
                digests = await connection.scalars(sa.select(bundles.c.digest).where(*mine))
                rows = [{"digest": d, "revoked_at": now} for d in sorted(digests)]
                if rows:
                    await connection.execute(
                        insert_ignore(self._db.dialect, revoked_bundles, rows, key=["digest"])
                    )
                return ""
            digest = await connection.scalar(
                sa.select(bundles.c.digest)
                .where(*mine, bundles.c.version == version)
                .order_by(bundles.c.created_at.desc())
                .limit(1)
            )
            if digest is None:
                raise NotFound(f"{name[:64]!r} has no deployed version {version[:64]!r}")
            changed = functions.update().where(*where).values(digest=digest, updated_at=max(now, issued_at))
            await connection.execute(changed)
            return str(digest)

        return await self._db.run(work, what=f"change function {name[:64]}")

    async def is_revoked(self, digest: str) -> bool:
        query = sa.select(revoked_bundles.c.seq).where(revoked_bundles.c.digest == digest)
        return bool(await self._rows(query, what="is a bundle revoked"))

    async def revoked_after(self, seq: int, *, limit: int = 1000) -> list[tuple[int, str]]:
        """(seq, digest) of the bundles revoked after `seq`, oldest first, at most `limit`."""
        query = (
            sa.select(revoked_bundles.c.seq, revoked_bundles.c.digest)
            .where(revoked_bundles.c.seq > seq)
            .order_by(revoked_bundles.c.seq)
            .limit(limit)
        )
        return [
            (int(row.seq), str(row.digest)) for row in await self._rows(query, what="list revoked bundles")
        ]

    async def function_versions(self, owner_key_id: str, name: str) -> list[FunctionRow]:
        """Every version the owner deployed under `name`, oldest first (`updated_at`: when stored)."""
        query = (
            sa.select(bundles.c.digest, bundles.c.version, bundles.c.runtime, bundles.c.created_at)
            .where(bundles.c.owner_key_id == owner_key_id, bundles.c.name == name)
            .order_by(bundles.c.created_at, bundles.c.digest)
        )
        rows = await self._rows(query, what="list function versions")
        return [FunctionRow(name, row.digest, row.version, row.runtime, row.created_at) for row in rows]

    # --- plumbing -------------------------------------------------------------------------------

    async def _scalar(self, query: sa.Select[T], *, what: str) -> T | None:
        async def work(connection: AsyncConnection) -> T | None:
            return await connection.scalar(query)

        return await self._db.run(work, what=what, write=False)

    async def _rows(self, query: sa.Select[Any], *, what: str) -> list[sa.Row[Any]]:
        async def work(connection: AsyncConnection) -> list[sa.Row[Any]]:
            return list((await connection.execute(query)).all())

        return await self._db.run(work, what=what, write=False)


def key_id_of(public_key: bytes) -> str:
    try:
        return node_id_of(public_key).hex()
    except SignatureError as error:
        raise Refused(str(error), status=400) from None


def check_length(field: str, value: str, column: sa.Column[Any]) -> None:
    # The same limit on both backends: SQLite would store an over-long value, MySQL reject it.
    assert isinstance(column.type, sa.String) and column.type.length is not None, column
    limit = column.type.length
    if len(value) > limit:
        raise Refused(f"{field} is longer than {limit} characters", status=400)
