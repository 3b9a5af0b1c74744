"""The anchor's wheel store: the last source of dependency layers (`p2pfaas.bundle.lock`).

Routes (raw bytes, not MessagePack: a wheel may be 64 MiB and is streamed both ways):
    PUT  /v1/wheels/{sha256}   wheel bytes -> Ack   (a registered lessee key signs `wheel_claim`)
    GET  /v1/wheels/{sha256}               -> the wheel's bytes   (anyone: nodes fetch them)
    HEAD /v1/wheels/{sha256}               -> 200 when the anchor has it, else 404

An upload names its file name and size in headers (`X-P2PFaaS-Filename`, Content-Length) and is
signed by the lessee's key over `wheel_claim(sha256, filename, size)` (`X-P2PFaaS-Key`,
`X-P2PFaaS-Signature`, hex); the anchor keeps it only when the bytes hash to the name it was put
under, and counts it against its uploader's quota (`WHEEL_QUOTA_BYTES`). Wheels are immutable:
putting one the anchor has changes nothing. `missing(lock)` says which wheels of a lock are not
here: a bundle whose lock names them is refused (`AnchorApi.put_bundle`), so every wheel a node
is asked to fetch exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.bundle.lock import MAX_WHEEL_BYTES, WHEEL_FILE, Lock, LockedWheel, wheel_claim
from p2pfaas.clock import wall_time
from p2pfaas.db import Database
from p2pfaas.db.schema import wheel_chunks, wheels
from p2pfaas.db.upsert import insert_ignore
from p2pfaas.errors import DecodeError, NotFound, Refused, SignatureError
from p2pfaas.identity import PublicKey
from p2pfaas.messages import Ack
from p2pfaas.rpc import reply

__all__ = ["WHEEL_CHUNK_BYTES", "WheelStore", "add_routes"]

WHEEL_CHUNK_BYTES = 4 * 1024 * 1024  # below a MySQL server's default max_allowed_packet (16 MiB)
WHEEL_QUOTA_BYTES = 4 * 1024 * 1024 * 1024  # per uploading key
UPLOADS_AT_ONCE = 4  # wheel bodies in the anchor's memory at once (64 MiB each at most)
UPLOAD_TIMEOUT_S = 300.0  # to receive one wheel's body: a slow sender does not hold a slot forever
_HEX64 = frozenset("0123456789abcdef")


@dataclass
class WheelStore:
    db: Database

    async def has(self, sha256: str) -> int | None:
        """The stored wheel's size, or None."""
        query = sa.select(wheels.c.size_bytes).where(wheels.c.sha256 == sha256)
        return await self.db.run(lambda c: _scalar(c, query), what="look up a wheel", write=False)

    async def missing(self, lock: Lock) -> list[LockedWheel]:
        wanted = {w.sha256: w for w in lock.wheels}
        query = sa.select(wheels.c.sha256).where(wheels.c.sha256.in_(sorted(wanted)))

        async def work(connection: AsyncConnection) -> set[str]:
            return {row.sha256 for row in await connection.execute(query)}

        present = await self.db.run(work, what="look up a lock's wheels", write=False)
        return [w for sha, w in sorted(wanted.items()) if sha not in present]

    async def uploaded_by(self, key_id: str) -> int:
        query = sa.select(sa.func.coalesce(sa.func.sum(wheels.c.size_bytes), 0)).where(
            wheels.c.uploader_key_id == key_id
        )
        return int(
            await self.db.run(lambda c: _scalar(c, query), what="sum a key's wheels", write=False) or 0
        )

    async def put(self, sha256: str, filename: str, data: bytes, *, uploader_key_id: str) -> None:
        chunks = [data[i : i + WHEEL_CHUNK_BYTES] for i in range(0, len(data), WHEEL_CHUNK_BYTES)]

        async def work(connection: AsyncConnection) -> None:
            dialect = connection.dialect.name
            row = {
                "sha256": sha256,
                "filename": filename,
                "size_bytes": len(data),
                "uploader_key_id": uploader_key_id,
                "created_at": wall_time(),
            }
            done = await connection.execute(insert_ignore(dialect, wheels, row, key=["sha256"]))
            if done.rowcount == 0:
                return  # stored meanwhile by another upload: the same bytes, by their hash
            for seq, chunk in enumerate(chunks):
                await connection.execute(wheel_chunks.insert().values(sha256=sha256, seq=seq, data=chunk))

        await self.db.run(work, what=f"store wheel {filename}")

    async def chunks(self, sha256: str) -> int:
        query = sa.select(sa.func.count()).select_from(wheel_chunks).where(wheel_chunks.c.sha256 == sha256)
        return int(await self.db.run(lambda c: _scalar(c, query), what="count chunks", write=False) or 0)

    async def chunk(self, sha256: str, seq: int) -> bytes:
        query = sa.select(wheel_chunks.c.data).where(
            wheel_chunks.c.sha256 == sha256, wheel_chunks.c.seq == seq
        )
        data = await self.db.run(lambda c: _scalar(c, query), what="read a wheel chunk", write=False)
        if data is None:
            raise NotFound(f"wheel {sha256[:12]} has no chunk {seq}")
        return bytes(data)


async def _scalar(connection: AsyncConnection, query: sa.Select[Any]) -> Any:
    return (await connection.execute(query)).scalar()


def add_routes(
    app: web.Application,
    store: WheelStore,
    *,
    may_upload: Callable[[PublicKey], Awaitable[None]],
) -> None:
    """Add the wheel routes; `may_upload(key)` raises Forbidden for a key that may not upload."""

    async def put_wheel(request: web.Request) -> web.Response:
        sha256 = _sha_param(request)
        filename = request.headers.get("X-P2PFaaS-Filename", "")
        if not WHEEL_FILE.fullmatch(filename):
            raise DecodeError(f"X-P2PFaaS-Filename {filename[:80]!r} is not a wheel's file name")
        size = request.content_length
        if size is None or not 0 < size <= MAX_WHEEL_BYTES:
            raise DecodeError(f"a wheel needs a Content-Length of 1 to {MAX_WHEEL_BYTES} bytes, got {size}")
        try:
            key = PublicKey(bytes.fromhex(request.headers.get("X-P2PFaaS-Key", "")))
            signature = bytes.fromhex(request.headers.get("X-P2PFaaS-Signature", ""))
        except ValueError:
            raise DecodeError("X-P2PFaaS-Key and X-P2PFaaS-Signature must be hex") from None
        key.verify(signature, wheel_claim(sha256, filename, size))  # SignatureError -> 403
        await may_upload(key)
        if await store.has(sha256) is not None:
            return reply(Ack("have it"))
        if uploads.locked():
            raise Refused(f"{UPLOADS_AT_ONCE} wheel uploads are on their way; try again shortly", status=503)
        # One upload per key at a time, so its quota is checked against what is stored, not raced.
        per_key = key_locks.setdefault(key.key_id, asyncio.Lock())
        if per_key.locked():
            raise Refused("this key already has a wheel upload on its way", status=429)
        async with uploads, per_key:
            used = await store.uploaded_by(key.key_id)
            if used + size > WHEEL_QUOTA_BYTES:
                raise Refused(
                    f"key {key.key_id[:12]} has uploaded {used} bytes of wheels; "
                    f"the quota is {WHEEL_QUOTA_BYTES}",
                    status=413,
                )
            async with asyncio.timeout(UPLOAD_TIMEOUT_S):
                data = await _read_body(request, size, sha256)
            _check_zip(data, filename)
            await store.put(sha256, filename, data, uploader_key_id=key.key_id)
        if len(key_locks) > 10_000:
            key_locks.clear()
        return reply(Ack("stored"))

    uploads = asyncio.Semaphore(UPLOADS_AT_ONCE)
    key_locks: dict[str, asyncio.Lock] = {}

    async def get_wheel(request: web.Request) -> web.StreamResponse:
        sha256 = _sha_param(request)
        size = await store.has(sha256)
        if size is None:
            raise NotFound(f"no wheel {sha256}")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        if request.method != "HEAD":
            for seq in range(await store.chunks(sha256)):
                await response.write(await store.chunk(sha256, seq))
        await response.write_eof()
        return response

    app.add_routes([web.put("/v1/wheels/{sha256}", put_wheel), web.get("/v1/wheels/{sha256}", get_wheel)])


async def _read_body(request: web.Request, size: int, sha256: str) -> bytes:
    body, hasher = bytearray(), hashlib.sha256()
    async for part in request.content.iter_chunked(1 << 20):
        if len(body) + len(part) > size:
            raise DecodeError("the body is longer than its Content-Length")
        hasher.update(part)
        body += part
    if len(body) != size or hasher.hexdigest() != sha256:
        raise SignatureError(f"the body does not hash to {sha256[:12]}… (or is cut short)")
    return bytes(body)


def _check_zip(data: bytes, filename: str) -> None:
    """A wheel is a zip with a central directory: junk would only make nodes fetch it for nothing."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if not archive.namelist():
                raise zipfile.BadZipFile("no members")
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise DecodeError(f"{filename} is not a wheel: {error}") from None


def _sha_param(request: web.Request) -> str:
    value = request.match_info["sha256"]
    if len(value) != 64 or not set(value) <= _HEX64:
        raise NotFound(f"{value[:80]!r} is not a wheel's SHA-256")
    return value
