"""`RelayLink`, a node's side of a relay: when its relay dies it dials the next candidate, and it
answers its tunnels over TLS on its own key (a relay that opens too many, or reuses one, is left)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from p2pfaas import rpc, tunnel
from p2pfaas.identity import KeyPair
from p2pfaas.relay import relay_path
from p2pfaas.relay.link import RelayLink
from tests.relay.conftest import linked_node, relay


async def test_a_dead_relay_is_replaced_by_the_next_candidate(tmp_path: Path) -> None:
    keys = KeyPair.generate()
    async with relay() as (second_url, _), tunnel.session() as session:
        first = relay()
        first_url, _ = await first.__aenter__()
        alive = {first_url, second_url}

        def candidates() -> list[str]:
            return [u for u in (first_url, second_url) if u in alive]

        async with linked_node(candidates, keys, tmp_path, retry_s=0.1) as (link, urls):
            assert link.relay == first_url
            await first.__aexit__(None, None, None)  # the relay dies
            alive.discard(first_url)
            for _ in range(200):
                if link.relay == second_url:
                    break
                await asyncio.sleep(0.05)
            assert link.relay == second_url and urls[-2:] == [None, second_url + relay_path(keys.key_id)]
            assert link.url is not None
            body = await rpc.request_bytes(session, "GET", f"{link.url}/v1/status", timeout_s=10)
            answer = json.loads(body)
            assert answer["path"] == f"/n/{keys.key_id}/v1/status"


async def test_a_relay_that_reuses_a_stream_or_opens_past_the_bound_is_left() -> None:
    """Found by review: each refused TunnelOpen started a task that waited on a relay that had
    stopped reading, without bound; such a relay is now left (the link moves to another)."""
    import random as rnd

    import aiohttp as http

    from p2pfaas.relay import wire
    from p2pfaas.relay.stream import Stream

    link = RelayLink(
        session=None, keys=KeyPair.generate(), candidates=None, serve=None,  # type: ignore[arg-type]
        on_url=lambda _: None, rng=rnd.Random(1), max_streams=1,
    )  # fmt: skip

    async def put(_: object) -> None:
        pass

    streams: dict[int, Stream] = {}
    link._on_frame(wire.TunnelOpen(0), streams, put)
    for frame in (wire.TunnelOpen(0), wire.TunnelOpen(1)):
        with pytest.raises(http.ClientError, match="past the rules"):
            link._on_frame(frame, streams, put)
    await link._streams.cancel()
