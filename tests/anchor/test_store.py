"""`RegistryStore` on SQLite and on a real MariaDB/MySQL: every test runs on both.

MySQL runs use the shared test database through `tests/anchor/conftest.py` (held under a
server-wide lock, emptied before each test) and skip, or fail with P2PFAAS_REQUIRE_MYSQL=1, when
no server is reachable.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.anchor.store import FunctionRow, RegistryStore
from p2pfaas.db import Database
from p2pfaas.db.schema import bundles, functions
from p2pfaas.errors import Refused
from p2pfaas.identity import KeyPair

T0 = 1_700_000_000.0


@pytest.fixture
def store(db: Database) -> RegistryStore:
    return RegistryStore(db)


def public_key(seed: str) -> bytes:
    return KeyPair.from_seed(seed.encode()).public.raw


async def lessee(store: RegistryStore, seed: str = "alice") -> str:
    return await store.register_lessee_key(public_key(seed), label=seed, now=T0)


def bundle_args(
    owner: str, name: str = "resize", version: str = "1.0", archive: bytes = b"zip"
) -> dict[str, Any]:
    digest = hashlib.sha256(owner.encode() + name.encode() + version.encode() + archive).hexdigest()
    return {
        "digest": digest,
        "owner_key_id": owner,
        "name": name,
        "version": version,
        "runtime": "python3.11",
        "handler": "main:handle",
        "memory_mb": 128,
        "timeout_s": 2.5,
        "deterministic": True,
        "signed_manifest": b"header:" + digest.encode(),
        "archive": archive,
        "now": T0 + 1,
    }


async def count(store: RegistryStore, db: Database, table: sa.Table) -> int:
    async def work(connection: AsyncConnection) -> int:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)

    return await db.run(work, what="count", write=False)


# --- lessee keys --------------------------------------------------------------------------------


async def test_lessee_keys_register_idempotently(store: RegistryStore) -> None:
    raw = public_key("alice")
    key_id = await store.register_lessee_key(raw, label="alice", now=T0)
    assert key_id == hashlib.sha1(raw).hexdigest() == KeyPair.from_seed(b"alice").public.key_id
    assert await store.register_lessee_key(raw, label="renamed", now=T0 + 5) == key_id
    assert await store.lessee_key(key_id) == raw
    assert await store.lessee_key("0" * 40) is None


async def test_malformed_lessee_key_is_refused(store: RegistryStore) -> None:
    with pytest.raises(Refused) as caught:
        await store.register_lessee_key(b"short", label="x", now=T0)
    assert caught.value.status == 400


# --- bundles and functions ----------------------------------------------------------------------


async def test_put_bundle_then_read_it_back(store: RegistryStore) -> None:
    owner = await lessee(store)
    args = bundle_args(owner)
    await store.put_bundle(**args)
    assert await store.bundle_header(args["digest"]) == args["signed_manifest"]
    assert await store.bundle_archive(args["digest"]) == b"zip"
    assert await store.resolve_function(owner, "resize") == args["digest"]
    assert await store.list_functions(owner) == [
        FunctionRow("resize", args["digest"], "1.0", "python3.11", T0 + 1)
    ]
    assert await store.bundle_header("f" * 64) is None
    assert await store.bundle_archive("f" * 64) is None
    assert await store.resolve_function(owner, "nope") is None


async def test_put_bundle_refuses_an_unknown_owner(store: RegistryStore, db: Database) -> None:
    with pytest.raises(Refused) as caught:
        await store.put_bundle(**bundle_args("a" * 40))
    assert caught.value.status == 403
    assert await count(store, db, bundles) == 0


async def test_put_bundle_is_idempotent(store: RegistryStore, db: Database) -> None:
    owner = await lessee(store)
    args = bundle_args(owner)
    await store.put_bundle(**args)
    await store.put_bundle(**{**args, "now": T0 + 9})
    assert await count(store, db, bundles) == 1
    assert await store.resolve_function(owner, "resize") == args["digest"]


async def test_new_version_moves_the_pointer_and_old_one_rolls_back(store: RegistryStore) -> None:
    owner = await lessee(store)
    v1, v2 = bundle_args(owner, version="1.0"), bundle_args(owner, version="2.0")
    await store.put_bundle(**v1)
    await store.put_bundle(**{**v2, "now": T0 + 2})
    assert await store.resolve_function(owner, "resize") == v2["digest"]
    assert [row.version for row in await store.list_functions(owner)] == ["2.0"]
    await store.put_bundle(**{**v1, "now": T0 + 3})
    assert await store.resolve_function(owner, "resize") == v1["digest"]
    assert await store.bundle_archive(v2["digest"]) == b"zip"  # old versions stay fetchable


async def test_functions_are_per_owner_and_names_are_case_sensitive(store: RegistryStore) -> None:
    alice, bob = await lessee(store, "alice"), await lessee(store, "bob")
    for owner, name in ((alice, "resize"), (alice, "Resize"), (bob, "resize"), (alice, "a-first")):
        await store.put_bundle(**bundle_args(owner, name=name))
    assert [row.name for row in await store.list_functions(alice)] == ["Resize", "a-first", "resize"]
    assert [row.name for row in await store.list_functions(bob)] == ["resize"]
    assert await store.list_functions("0" * 40) == []
    assert await store.resolve_function(alice, "resize") != await store.resolve_function(alice, "Resize")


async def test_a_digest_belongs_to_one_owner_and_name(store: RegistryStore) -> None:
    alice, bob = await lessee(store, "alice"), await lessee(store, "bob")
    args = bundle_args(alice)
    await store.put_bundle(**args)
    for clash in ({"owner_key_id": bob}, {"name": "other"}):
        with pytest.raises(Refused) as caught:
            await store.put_bundle(**{**args, **clash})
        assert caught.value.status == 409
    assert await store.resolve_function(bob, "resize") is None


async def test_a_version_is_immutable(store: RegistryStore, db: Database) -> None:
    """Issue #16: redeploying version 1.0.0 with different code was silently accepted."""
    owner = await lessee(store)
    first = bundle_args(owner, version="1.0.0")
    await store.put_bundle(**first)
    changed = bundle_args(owner, version="1.0.0", archive=b"other code")
    with pytest.raises(Refused, match="already deployed with other code") as caught:
        await store.put_bundle(**changed)
    assert caught.value.status == 409
    assert await store.resolve_function(owner, "resize") == first["digest"]
    assert await store.bundle_archive(changed["digest"]) is None  # nothing of it was kept
    await store.put_bundle(**{**first, "now": T0 + 5})  # the same code again: fine
    await store.put_bundle(**bundle_args(owner, version="1.0.1", archive=b"other code"))


async def test_malformed_bundle_fields_are_refused(store: RegistryStore) -> None:
    owner = await lessee(store)
    for bad in ({"digest": "ABC"}, {"digest": "G" * 64}, {"name": "n" * 201}, {"handler": "h" * 256}):
        with pytest.raises(Refused) as caught:
            await store.put_bundle(**{**bundle_args(owner), **bad})
        assert caught.value.status == 400


async def test_concurrent_puts_of_one_digest_store_one_row(store: RegistryStore, db: Database) -> None:
    owner = await lessee(store)
    args = bundle_args(owner, archive=os.urandom(64 * 1024))
    await asyncio.gather(*(store.put_bundle(**{**args, "now": T0 + i}) for i in range(16)))
    assert await count(store, db, bundles) == 1
    assert await count(store, db, functions) == 1
    assert await store.bundle_archive(args["digest"]) == args["archive"]


async def test_concurrent_deploys_of_versions_leave_one_of_them_current(store: RegistryStore) -> None:
    owner = await lessee(store)
    versions = [bundle_args(owner, version=f"{i}.0") for i in range(8)]
    await asyncio.gather(*(store.put_bundle(**args) for args in versions))
    assert await store.resolve_function(owner, "resize") in {args["digest"] for args in versions}
    assert len(await store.list_functions(owner)) == 1


async def test_large_archive_round_trips(store: RegistryStore) -> None:
    # 8 MiB of random bytes: must fit MariaDB's default 16 MiB max_allowed_packet once escaped.
    owner = await lessee(store)
    archive = random.Random(8).randbytes(8 * 1024 * 1024)
    args = bundle_args(owner, archive=archive)
    await store.put_bundle(**args)
    assert await store.bundle_archive(args["digest"]) == archive


async def test_every_byte_value_round_trips(store: RegistryStore) -> None:
    owner = await lessee(store)
    archive = bytes(range(256)) * 4 + b"\\'\"\0\n\r\x1a%s%%"
    args = bundle_args(owner, archive=archive)
    await store.put_bundle(**{**args, "signed_manifest": archive[::-1]})
    assert await store.bundle_archive(args["digest"]) == archive
    assert await store.bundle_header(args["digest"]) == archive[::-1]


# --- nodes --------------------------------------------------------------------------------------


async def test_archive_over_mysql_packet_limit_is_refused_not_retried(
    store: RegistryStore, db: Database
) -> None:
    owner = await lessee(store)
    args = bundle_args(owner, archive=random.Random(17).randbytes(17 * 1024 * 1024))
    if db.dialect == "mysql":  # 16 MiB max_allowed_packet by default
        with pytest.raises(Refused) as caught:
            await store.put_bundle(**args)
        assert caught.value.status == 413
        assert await store.resolve_function(owner, "resize") is None
    else:
        await store.put_bundle(**args)
        assert await store.bundle_archive(args["digest"]) == args["archive"]
