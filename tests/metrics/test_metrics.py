"""GET /metrics on a real node and a real anchor on 127.0.0.1: every documented metric is there,
in the Prometheus text format (checked with prometheus-client's own parser), the figures match
what happened, and only allowed callers may read them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from p2pfaas.errors import FunctionFailed
from tests.functions import write_function
from tests.metrics.conftest import documented
from tests.metrics.netkit import Net, metered_network


async def scrape(url: str) -> dict[str, list[Sample]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as answer:
        assert answer.status == 200, await answer.text()
        assert answer.headers["Content-Type"].startswith("text/plain; version=")
        text = await answer.text()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    async with metered_network(tmp_path) as net:
        yield net


async def test_a_node_and_its_anchor_expose_every_documented_metric(net: Net) -> None:
    await net.client.deploy(write_function(net.root, "echo"))
    await net.client.deploy(write_function(net.root, "boom"))
    for i in range(5):
        await net.client.invoke("echo", {"i": i}, node_url=net.node.url)
    with pytest.raises(FunctionFailed):
        await net.client.invoke("boom", 1, node_url=net.node.url)

    node = await scrape(net.node.url)
    anchor = await scrape(net.anchor.url)
    exposed = {**{name: "node" for name in node}, **{name: "anchor" for name in anchor}}
    names = documented()
    assert set(names) == set(exposed), "docs/metrics.md and the exposed metrics differ"

    calls = node["p2pfaas_node_invocations"]
    assert value(calls, "p2pfaas_node_invocations_total", function="echo", outcome="ok") == 5
    assert value(calls, "p2pfaas_node_invocations_total", function="boom", outcome="failed") == 1
    latency = node["p2pfaas_node_invocation_seconds"]
    assert value(latency, "p2pfaas_node_invocation_seconds_count", stage="total") == 6
    starts = node["p2pfaas_node_instance_starts"]
    assert value(starts, "p2pfaas_node_instance_starts_total", kind="cold") == 2  # one per function
    assert value(starts, "p2pfaas_node_instance_starts_total", kind="warm") == 4
    assert value(node["p2pfaas_node_cold_start_seconds"], "p2pfaas_node_cold_start_seconds_count") == 2
    assert value(node["p2pfaas_node_slots"], "p2pfaas_node_slots", state="total") == net.node.config.slots
    assert value(node["p2pfaas_node_slots"], "p2pfaas_node_slots", state="busy") == 0
    requests = node["p2pfaas_node_http_requests"]
    assert value(requests, "p2pfaas_node_http_requests_total", route="/v1/invoke", status="200") == 6
    # Routes are templates: the many digests fetched from the anchor are one series.
    bundles = [s for s in anchor["p2pfaas_anchor_http_requests"] if "bundles" in s.labels["route"]]
    assert {s.labels["route"] for s in bundles} <= {"/v1/bundles", "/v1/bundles/{digest}"}


def test_the_shipped_dashboard_and_scrape_config_name_only_documented_metrics() -> None:
    import json

    bootstrap = Path(__file__).parents[2] / "bootstrap"
    dashboard = json.loads((bootstrap / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"p2pfaas_[a-z_]+", e)
    }
    assert used and used <= set(documented())
    config = (bootstrap / "prometheus.yml").read_text()
    assert config.count("metrics_path: /metrics") == 2 and "p2pfaas-node" in config
