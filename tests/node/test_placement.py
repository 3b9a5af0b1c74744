"""A node's placement side (`p2pfaas.node.placement`): its settings checked, and its routes on a real
node: a drain only by the node's own fresh word, no job taken while draining, no unsigned job poll."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from p2pfaas import rpc, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.errors import ConfigError, Refused
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack
from p2pfaas.node.placement import DRAIN_REQUEST_MAX_AGE_S, PlacementConfig
from p2pfaas.placement.wire import DrainRequest, JobStatus, JobSubmit
from tests.node.servicekit import request_for, running_node, until


def test_the_settings_name_a_known_policy_sane_gossip_and_valid_ranges() -> None:
    assert PlacementConfig().policy == "ours"
    with pytest.raises(ValueError):
        PlacementConfig(policy="nonsense")
    with pytest.raises(ConfigError):
        PlacementConfig(callback_allow=("not a range",))
    for bad in ({"gossip_period_s": 0.0}, {"gossip_fanout": 0}, {"hop_limit": 0}):
        with pytest.raises(ConfigError, match="gossip period must be positive"):
            PlacementConfig(**bad)


async def test_a_drain_takes_the_nodes_own_fresh_word_and_then_no_job(
    anchor: AnchorServer, tmp_path: Path
) -> None:
    async with running_node(anchor.url, tmp_path, "n1") as node, aiohttp.ClientSession() as session:

        def drain(keys: KeyPair, issued_at: float) -> DrainRequest:
            return signing.sign(DrainRequest(5.0, issued_at, b"", b""), keys)

        url = f"{node.url}/v1/drain"
        for refused in (
            drain(KeyPair.generate(), time.time()),
            drain(node.keys, time.time() - DRAIN_REQUEST_MAX_AGE_S - 60),
        ):
            with pytest.raises(Refused) as forbidden:
                await rpc.call(session, "POST", url, Ack, refused, timeout_s=10)
            assert forbidden.value.status == 403
        assert not node.placement.router.draining
        with pytest.raises(Refused) as unsigned:
            await rpc.request_bytes(session, "GET", f"{node.url}/v1/jobs/some-id", timeout_s=10)
        assert unsigned.value.status == 403
        ack = await rpc.call(session, "POST", url, Ack, drain(node.keys, time.time()), timeout_s=10)
        assert ack.detail == "draining"
        await until(lambda: node.placement.router.draining)
        job = JobSubmit(request_for("ab" * 32, KeyPair.generate(), {}), callback_url="")
        with pytest.raises(Refused, match="node is draining") as busy:
            await rpc.call(session, "POST", f"{node.url}/v1/jobs", JobStatus, job, timeout_s=10)
        assert busy.value.status == 503
