"""The anchor's wheel store over real HTTP on 127.0.0.1 (`p2pfaas.anchor.wheels`): signed uploads by
registered lessee keys, bytes kept only under their own hash, streamed back in chunks, and bundles
whose lock names a wheel the anchor lacks refused."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import aiohttp
import pytest

from p2pfaas import rpc
from p2pfaas.anchor import wheels
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.bundle import make_bundle
from p2pfaas.bundle.lock import Lock, LockedWheel, wheel_claim
from p2pfaas.client import AsyncClient
from p2pfaas.client.layers import upload_missing
from p2pfaas.errors import NotFound, Refused
from p2pfaas.identity import KeyPair


def _wheel(size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("blob/data.bin", os.urandom(size))
    return buffer.getvalue()


DATA = _wheel(wheels.WHEEL_CHUNK_BYTES + 12345)  # two chunks
SHA = hashlib.sha256(DATA).hexdigest()
FILENAME = "blob-1.0-py3-none-any.whl"


def headers(keys: KeyPair, *, sha: str = SHA, size: int = len(DATA)) -> dict[str, str]:
    return {
        "X-P2PFaaS-Filename": FILENAME,
        "X-P2PFaaS-Key": keys.public.raw.hex(),
        "X-P2PFaaS-Signature": keys.sign(wheel_claim(sha, FILENAME, size)).hex(),
    }


async def test_a_registered_key_uploads_a_wheel_that_anyone_can_fetch(tmp_path: Path) -> None:
    keys, stranger = KeyPair.generate(), KeyPair.generate()
    async with (
        AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor,
        AsyncClient(anchor.url, keys) as client,
        aiohttp.ClientSession() as session,
    ):
        await client.register_key(label="test")
        url = f"{anchor.url}/v1/wheels/{SHA}"
        with pytest.raises(NotFound):
            await rpc.request_bytes(session, "HEAD", url, timeout_s=10)
        with pytest.raises(Refused) as refused:  # not a registered key
            await rpc.request_bytes(session, "PUT", url, DATA, timeout_s=30, headers=headers(stranger))
        assert refused.value.status == 403
        forged = {
            **headers(keys),
            "X-P2PFaaS-Signature": stranger.sign(wheel_claim(SHA, FILENAME, len(DATA))).hex(),
        }
        with pytest.raises(Refused) as refused:
            await rpc.request_bytes(session, "PUT", url, DATA, timeout_s=30, headers=forged)
        assert refused.value.status == 403
        wrong = hashlib.sha256(b"other").hexdigest()
        with pytest.raises(Refused) as refused:  # bytes that are not the wheel they are put under
            await rpc.request_bytes(
                session,
                "PUT",
                f"{anchor.url}/v1/wheels/{wrong}",
                DATA,
                timeout_s=30,
                headers=headers(keys, sha=wrong),
            )
        assert refused.value.status == 403
        junk = b"junk" * 100
        junk_sha = hashlib.sha256(junk).hexdigest()
        with pytest.raises(Refused, match="not a wheel") as refused:  # only wheels: nodes would fetch it
            await rpc.request_bytes(
                session, "PUT", f"{anchor.url}/v1/wheels/{junk_sha}", junk, timeout_s=30,
                headers=headers(keys, sha=junk_sha, size=len(junk)),
            )  # fmt: skip
        assert refused.value.status == 400
        await rpc.request_bytes(session, "PUT", url, DATA, timeout_s=30, headers=headers(keys))
        await rpc.request_bytes(session, "HEAD", url, timeout_s=10)
        assert await rpc.request_bytes(session, "GET", url, timeout_s=30) == DATA
        with pytest.raises(Exception, match="larger than"):
            await rpc.request_bytes(session, "GET", url, timeout_s=30, max_bytes=len(DATA) - 1)


async def test_a_bundle_whose_lock_names_a_missing_wheel_is_refused_until_it_is_uploaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KeyPair.generate()
    lock = Lock((LockedWheel("blob", "1.0", FILENAME, SHA, len(DATA)),), "0" * 64)
    function = tmp_path / "fn"
    function.mkdir()
    (function / "p2pfaas.toml").write_text('name = "f"\nversion = "1"\nhandler = "m:h"\n')
    (function / "m.py").write_text("def h(e):\n    return e\n")
    (function / "p2pfaas.lock").write_text(lock.to_json())
    cache = tmp_path / "wheels"
    (cache / SHA).mkdir(parents=True)
    (cache / SHA / FILENAME).write_bytes(DATA)
    async with (
        AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor,
        AsyncClient(anchor.url, keys) as client,
    ):
        upload = make_bundle(function, keys)
        with pytest.raises(Refused, match=f"upload the wheels .*{FILENAME}") as refused:
            await client.deploy_bundle(upload)
        assert refused.value.status == 409
        assert await upload_missing(client.session, anchor.url, keys, lock, cache=cache) == 1
        assert await upload_missing(client.session, anchor.url, keys, lock, cache=cache) == 0  # has it
        info = await client.deploy_bundle(upload)
        assert info.header.digest == upload.header.digest
