"""The lessee's side of dependency layers (`p2pfaas.client.layers`) against a real anchor: the wheels
the anchor lacks are uploaded from the client's cache once, and a wheel missing from the cache says
to pack again."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.bundle.lock import Lock, LockedWheel
from p2pfaas.bundle.resolve import wheel_path
from p2pfaas.client import AsyncClient
from p2pfaas.client.layers import upload_missing
from p2pfaas.errors import BundleError
from p2pfaas.identity import KeyPair


def wheel(name: str) -> tuple[LockedWheel, bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/__init__.py", f"NAME = {name!r}\n")
    data = buffer.getvalue()
    filename = f"{name}-1.0-py3-none-any.whl"
    return LockedWheel(name, "1.0", filename, hashlib.sha256(data).hexdigest(), len(data)), data


async def test_only_the_wheels_the_anchor_lacks_are_uploaded(tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    (first, first_data), (second, second_data) = wheel("alpha"), wheel("beta")
    for locked, data in ((first, first_data), (second, second_data)):
        wheel_path(cache, locked).parent.mkdir(parents=True)
        wheel_path(cache, locked).write_bytes(data)
    keys = KeyPair.generate()
    async with (
        AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0) as anchor,
        AsyncClient(anchor.url, keys) as client,
    ):
        await client.register_key(label="test")
        one = Lock((first,), "0" * 64)
        assert await upload_missing(client.session, anchor.url, keys, one, cache=cache) == 1
        both = Lock((first, second), "1" * 64)
        assert await upload_missing(client.session, anchor.url, keys, both, cache=cache) == 1  # beta only
        assert await upload_missing(client.session, anchor.url, keys, both, cache=cache) == 0
        (gamma, _) = wheel("gamma")  # locked, but never downloaded into this cache
        with pytest.raises(BundleError, match=r"gamma-1\.0-py3-none-any\.whl is not in the wheel cache"):
            await upload_missing(client.session, anchor.url, keys, Lock((gamma,), "2" * 64), cache=cache)
