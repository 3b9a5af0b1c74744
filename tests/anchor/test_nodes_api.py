"""The anchor's node directory (p2pfaas/anchor/nodes_api.py): a node that answers at its URL with its
own id is listed, with what it announced; one that names another id, announces too often, or is not
bound to a volunteer account (where accounts are required) is not. Real anchor; the "node" is a real
HTTP server that answers `GET /v1/status` as a node does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from p2pfaas import rpc, signing
from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.clock import wall_time
from p2pfaas.errors import Refused
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack, NodeAnnouncement, NodeList, NodeStatus


class StatusServer:
    """Answers `GET /v1/status` naming `node_id`; counts the checks."""

    def __init__(self, node_id: str) -> None:
        self.node_id, self.checks = node_id, 0

    async def status(self, request: web.Request) -> web.Response:
        self.checks += 1
        return rpc.reply(NodeStatus(self.node_id, "", "docker", True, 0, 0, 0))

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/status", self.status)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def anchor(tmp_path: Path) -> AsyncIterator[str]:
    settings = AnchorSettings(hasher=PasswordHasher(log2_n=10))
    async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0, settings=settings) as server:
        yield server.url


async def _announce(session: aiohttp.ClientSession, anchor: str, keys: KeyPair, url: str) -> Ack:
    unsigned = NodeAnnouncement(url, ("python3.11",), 2.0, 4096, "docker", wall_time(), b"", b"")
    msg = signing.sign(unsigned, keys)
    return await rpc.call(session, "POST", f"{anchor}/v1/nodes", Ack, msg, timeout_s=30)


async def test_a_node_that_answers_as_itself_is_listed_and_checked_once_per_url(anchor: str) -> None:
    keys = KeyPair.generate()
    node = StatusServer(keys.public.key_id)
    async with node as url, aiohttp.ClientSession() as session:
        assert (await _announce(session, anchor, keys, url)).detail == keys.public.key_id
        await _announce(session, anchor, keys, url)  # the same URL again: not dialled again
        listed = await rpc.call(session, "GET", f"{anchor}/v1/nodes", NodeList, timeout_s=10)
    assert node.checks == 1
    [info] = listed.nodes
    assert (info.node_id, info.url, info.runtimes, info.cores, info.memory_mb) == (
        keys.public.key_id,
        url,
        ("python3.11",),
        2.0,
        4096,
    )


async def test_a_url_that_answers_with_another_nodes_id_is_refused(anchor: str) -> None:
    async with StatusServer(KeyPair.generate().public.key_id) as url, aiohttp.ClientSession() as session:
        with pytest.raises(Refused) as refused:
            await _announce(session, anchor, KeyPair.generate(), url)
        listed = await rpc.call(session, "GET", f"{anchor}/v1/nodes", NodeList, timeout_s=10)
    assert refused.value.status == 422 and listed.nodes == ()


async def test_a_node_that_announces_too_often_is_told_to_slow_down(anchor: str) -> None:
    keys = KeyPair.generate()
    async with StatusServer(keys.public.key_id) as url, aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(8):  # the burst is 5
            try:
                await _announce(session, anchor, keys, url)
                statuses.append(200)
            except Refused as exc:
                statuses.append(exc.status)
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:]


async def test_where_accounts_are_required_an_unbound_node_is_refused_before_it_is_dialled(
    tmp_path: Path,
) -> None:
    keys = KeyPair.generate()
    settings = AnchorSettings(require_accounts=True, hasher=PasswordHasher(log2_n=10))
    node = StatusServer(keys.public.key_id)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    server = AnchorServer(db_url, port=0, settings=settings)
    async with server, node as url, aiohttp.ClientSession() as session:
        with pytest.raises(Refused) as refused:
            await _announce(session, server.url, keys, url)
    assert refused.value.status == 403 and node.checks == 0


async def test_a_listed_url_is_dialled_again_once_its_check_is_old_and_refused_if_now_dead(
    tmp_path: Path,
) -> None:
    """Issue #12: a node that lost its port forward kept being listed at a URL nobody reaches, since
    the anchor checked each URL once. A check now ages: past `reachability_recheck_s` it is redone."""
    settings = AnchorSettings(hasher=PasswordHasher(log2_n=10), reachability_recheck_s=1.0)
    keys = KeyPair.generate()
    async with AnchorServer(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}", port=0, settings=settings) as anchor:
        node = StatusServer(keys.public.key_id)
        async with aiohttp.ClientSession() as session:
            async with node as url:
                await _announce(session, anchor.url, keys, url)
                await _announce(session, anchor.url, keys, url)
                assert node.checks == 1  # fresh: not dialled again
                await asyncio.sleep(1.1)
                await _announce(session, anchor.url, keys, url)
                assert node.checks == 2  # old: dialled again, and it answered
            await asyncio.sleep(1.1)  # the node's address is now dead
            with pytest.raises(Refused) as refused:
                await _announce(session, anchor.url, keys, url)
    assert refused.value.status == 422
