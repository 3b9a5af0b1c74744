"""`RelayLink`, a node's side of a relay: when its relay dies, it dials the next candidate."""

from __future__ import annotations

import asyncio
import random

import aiohttp

from p2pfaas.identity import KeyPair
from p2pfaas.relay import RelayLink, relay_path
from tests.relay.conftest import node_app, relay, serve


async def test_a_dead_relay_is_replaced_by_the_next_candidate() -> None:
    keys = KeyPair.generate()
    urls: list[str | None] = []
    async with relay() as (second_url, _), serve(node_app()) as local, aiohttp.ClientSession() as session:
        first = relay()
        first_url, _ = await first.__aenter__()
        alive = {first_url, second_url}

        async def candidates() -> list[str]:
            return [u for u in (first_url, second_url) if u in alive]

        async with RelayLink(
            session=session, keys=keys, candidates=candidates, local_url=local, on_url=urls.append,
            rng=random.Random(2), retry_s=0.1,
        ) as link:  # fmt: skip
            await asyncio.wait_for(link.connected.wait(), 10)
            assert link.relay == first_url
            await first.__aexit__(None, None, None)  # the relay dies
            alive.discard(first_url)
            for _ in range(200):
                if link.relay == second_url:
                    break
                await asyncio.sleep(0.05)
            assert link.relay == second_url and urls[-2:] == [None, second_url + relay_path(keys.key_id)]
            async with session.get(f"{link.url}/v1/status") as r:
                assert r.status == 201
