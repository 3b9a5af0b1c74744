"""What a node's /metrics reads at scrape time (p2pfaas/node/readings.py): every documented reading,
with the node's own figures, before and after a call. A real node in this process."""

from __future__ import annotations

from pathlib import Path

from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.metrics.catalog import NODE_READINGS
from p2pfaas.node.readings import node_readings
from tests.functions import write_function
from tests.node.servicekit import request_for, running_node


async def test_every_documented_reading_is_read_with_the_nodes_figures(
    anchor: AnchorServer, client: AsyncClient, tmp_path: Path
) -> None:
    echo = await client.deploy(write_function(tmp_path, "echo"))
    async with running_node(anchor.url, tmp_path, "n", slots=3, memory_mb=512, dht_port=None) as node:

        def read() -> dict[str, float | dict[str, float]]:
            return node_readings(
                node.placement.router, node.service, node.payments, tables=node.tables,
                overlay=node.overlay, memory_lent_mb=node.config.memory_mb,
            )  # fmt: skip

        before = read()
        assert set(before) == {reading.name for reading in NODE_READINGS} - {"dht_contacts"}
        assert before["slots"] == {"total": 3, "busy": 0} and before["queue_length"] == 0
        assert before["memory_mb"] == {"lent": 512, "reserved": 0} and before["warm_instances"] == 0
        assert (await node.service.invoke(request_for(echo.header.digest, client.keys, 1))).ok
        after = read()
        assert after["warm_instances"] == 1  # the instance stays warm for the next call
        assert after["slots"] == {"total": 3, "busy": 0}
