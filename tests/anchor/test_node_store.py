"""`NodeStore` on SQLite and on a real MariaDB/MySQL (tests/anchor/conftest.py): nodes register,
refresh and expire, are kept alive by a touch, and a node's id must be its key's."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from p2pfaas.anchor.node_store import NodeRow, NodeStore
from p2pfaas.db import Database
from p2pfaas.errors import NotFound, Refused
from tests.anchor.test_store import T0, public_key


@pytest.fixture
def store(db: Database) -> NodeStore:
    return NodeStore(db)


def node_args(seed: str, **changes: Any) -> dict[str, Any]:
    raw = public_key(seed)
    args = {
        "node_id": hashlib.sha1(raw).hexdigest(),
        "public_key": raw,
        "url": f"http://{seed}.example:8470",
        "runtimes": ["python3.11"],
        "cores": 2.5,
        "memory_mb": 4096,
        "now": T0,
    }
    return {**args, **changes}


async def test_nodes_register_refresh_and_expire(store: NodeStore) -> None:
    first = node_args("n1")
    await store.upsert_node(**first)
    await store.upsert_node(**node_args("n2", cores=None, memory_mb=None, runtimes=[], now=T0 + 10))
    await store.upsert_node(
        **node_args("n1", url="http://moved:1", runtimes=["python3.11", "python3.12"], now=T0 + 20)
    )
    rows = await store.live_nodes(now=T0 + 30, max_age_s=20)
    by_id = {row.node_id: row for row in rows}
    assert by_id[first["node_id"]] == NodeRow(
        node_id=first["node_id"],
        public_key=first["public_key"],
        url="http://moved:1",
        runtimes=("python3.11", "python3.12"),
        cores=2.5,
        memory_mb=4096,
        registered_at=T0,
        last_seen_at=T0 + 20,
    )
    n2 = by_id[node_args("n2")["node_id"]]
    assert (n2.cores, n2.memory_mb, n2.runtimes, n2.last_seen_at) == (None, None, (), T0 + 10)
    assert [row.node_id for row in rows] == sorted(by_id)
    assert [row.node_id for row in await store.live_nodes(now=T0 + 30, max_age_s=19.5)] == [first["node_id"]]
    assert await store.live_nodes(now=T0 + 100, max_age_s=20) == []


async def test_touch_node_keeps_it_alive(store: NodeStore) -> None:
    args = node_args("n1")
    await store.upsert_node(**args)
    await store.touch_node(args["node_id"], T0 + 50)
    await store.touch_node(args["node_id"], T0 + 50)  # an unchanged row still counts as found
    [row] = await store.live_nodes(now=T0 + 60, max_age_s=15)
    assert (row.registered_at, row.last_seen_at) == (T0, T0 + 50)
    with pytest.raises(NotFound):
        await store.touch_node("0" * 40, T0)


async def test_node_id_must_match_its_key(store: NodeStore) -> None:
    for bad in (
        node_args("n1", node_id="0" * 40),
        node_args("n1", url="u" * 2049),
        node_args("n1", runtimes="py"),
    ):
        with pytest.raises(Refused) as caught:
            await store.upsert_node(**bad)
        assert caught.value.status == 400
