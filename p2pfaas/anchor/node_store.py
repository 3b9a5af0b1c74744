"""The anchor's store of volunteer nodes: each node's last announcement (its key, URL, runtimes and
offer) and when it was last seen. Like `RegistryStore`: one transaction per method through
`Database.run`, idempotent, every `now` passed in; it checks that a node's id is its key's and that
fields fit their columns, nothing more (the anchor's node routes verify signatures first)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas.anchor.store import check_length, key_id_of
from p2pfaas.db import Database
from p2pfaas.db.schema import nodes
from p2pfaas.db.upsert import upsert
from p2pfaas.errors import NotFound, Refused


@dataclass(frozen=True)
class NodeRow:
    """A volunteer node as last registered. `cores`/`memory_mb` are None when the node did not say."""

    node_id: str
    public_key: bytes
    url: str
    runtimes: tuple[str, ...]
    cores: float | None
    memory_mb: int | None
    registered_at: float
    last_seen_at: float


class NodeStore:
    """Node queries over an open `Database`; driven by the anchor's node routes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert_node(
        self,
        *,
        node_id: str,
        public_key: bytes,
        url: str,
        runtimes: Sequence[str],
        cores: float | None,
        memory_mb: int | None,
        now: float,
    ) -> None:
        """Register a node, or refresh what it offers; either way it was seen at `now`.

        `registered_at` keeps the first registration's time. Refused (400) if `node_id` is not the
        hex SHA-1 of `public_key`, or a field is malformed.
        """
        if key_id_of(public_key) != node_id:
            raise Refused(f"node id {node_id[:12]!r} is not the SHA-1 of its public key", status=400)
        check_length("url", url, nodes.c.url)
        if isinstance(runtimes, str) or not all(isinstance(runtime, str) for runtime in runtimes):
            raise Refused("runtimes must be a list of names", status=400)
        row = {
            "node_id": node_id,
            "public_key": public_key,
            "url": url,
            "runtimes": list(runtimes),
            "cores": cores,
            "memory_mb": memory_mb,
            "registered_at": now,
            "last_seen_at": now,
        }
        refreshed = ["url", "runtimes", "cores", "memory_mb", "last_seen_at"]

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(upsert(self._db.dialect, nodes, row, key=["node_id"], update=refreshed))

        await self._db.run(work, what=f"upsert node {node_id[:12]}")

    async def touch_node(self, node_id: str, now: float) -> None:
        """Record that the node was seen at `now`. Raises `NotFound` for an unregistered node."""
        update = sa.update(nodes).where(nodes.c.node_id == node_id).values(last_seen_at=now)

        async def work(connection: AsyncConnection) -> int:
            # MySQL reports matched (not changed) rows: SQLAlchemy connects with CLIENT.FOUND_ROWS.
            return (await connection.execute(update)).rowcount

        if await self._db.run(work, what=f"touch node {node_id[:12]}") == 0:
            raise NotFound(f"node {node_id[:12]!r} is not registered")

    async def live_nodes(self, *, now: float, max_age_s: float) -> list[NodeRow]:
        """Nodes seen within `max_age_s` before `now` (inclusive), by node id."""
        query: sa.Select[Any] = (
            sa.select(
                nodes.c.node_id,
                nodes.c.public_key,
                nodes.c.url,
                nodes.c.runtimes,
                nodes.c.cores,
                nodes.c.memory_mb,
                nodes.c.registered_at,
                nodes.c.last_seen_at,
            )
            .where(nodes.c.last_seen_at >= now - max_age_s)
            .order_by(nodes.c.node_id)
        )

        async def work(connection: AsyncConnection) -> list[sa.Row[Any]]:
            return list((await connection.execute(query)).all())

        rows = await self._db.run(work, what="list live nodes", write=False)
        return [
            NodeRow(
                node_id=row.node_id,
                public_key=row.public_key,
                url=row.url,
                runtimes=tuple(row.runtimes),
                cores=row.cores,
                memory_mb=row.memory_mb,
                registered_at=row.registered_at,
                last_seen_at=row.last_seen_at,
            )
            for row in rows
        ]
