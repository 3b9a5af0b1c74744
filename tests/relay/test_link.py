"""`RelayLink`, a node's side of a relay: when its relay dies it dials the next candidate, and it
answers its tunnels over TLS on its own key (a relay that opens too many is refused)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from p2pfaas import rpc, tunnel
from p2pfaas.errors import Unreachable
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


async def test_a_relay_that_opens_more_tunnels_than_the_node_holds_gets_the_extra_refused(
    tmp_path: Path,
) -> None:
    keys = KeyPair.generate()
    async with relay() as (relay_url, hub), linked_node(lambda: [relay_url], keys, tmp_path) as (link, _):
        link.max_streams = 1
        async with tunnel.session() as session:

            async def slow() -> bool:
                try:
                    await rpc.request_bytes(session, "GET", f"{link.url}/slow?sleep=0.5", timeout_s=10)
                except Unreachable:
                    return False
                return True

            assert sorted(await asyncio.gather(slow(), slow())) == [False, True]
        assert link.tunnels == 1 and isinstance(link, RelayLink) and hub.stats.tunnels == 2
