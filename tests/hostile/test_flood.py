"""Issue #14, hole 10: the anchor's node list could be flooded with fresh keys pointing at a tarpit
(a server that accepts connections and never answers), and a lessee's call then waited on each.

Real anchor and client over loopback; the tarpit is an asyncio server that reads and never writes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from p2pfaas import rpc, signing
from p2pfaas.anchor.app import AnchorSettings
from p2pfaas.anchor.passwords import PasswordHasher
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.client import async_client as async_client_module
from p2pfaas.clock import wall_time
from p2pfaas.errors import InvokeTimeout, Refused
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack, NodeAnnouncement, NodeInfo, NodeList
from tests.functions import write_function


class Tarpit:
    """Accepts connections, reads what comes, never answers; counts the connections."""

    def __init__(self) -> None:
        self.connections = 0
        self._held: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._held.append(writer)
        await reader.read(1 << 16)

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._held:
            writer.close()
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def tarpit() -> AsyncIterator[tuple[Tarpit, str]]:
    pit = Tarpit()
    async with pit as url:
        yield pit, url


def _announcement(keys: KeyPair, url: str, *, issued_at: float) -> NodeAnnouncement:
    unsigned = NodeAnnouncement(url, ("python3.11",), 64.0, 1 << 20, "docker", issued_at, b"", b"")
    return signing.sign(unsigned, keys)


async def _announce(session: aiohttp.ClientSession, anchor: str, msg: NodeAnnouncement) -> Ack:
    return await rpc.call(session, "POST", f"{anchor}/v1/nodes", Ack, msg, timeout_s=30)


@pytest.mark.parametrize("require_accounts", [True, False])
async def test_fresh_keys_pointing_at_a_tarpit_are_never_listed(
    tmp_path: Path, tarpit: tuple[Tarpit, str], require_accounts: bool
) -> None:
    pit, url = tarpit
    settings = AnchorSettings(require_accounts=require_accounts, hasher=PasswordHasher(log2_n=10))
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
    async with AnchorServer(db_url, port=0, settings=settings) as anchor, aiohttp.ClientSession() as session:
        now = wall_time()
        stale = _announcement(KeyPair.generate(), url, issued_at=now - 10 * 86400)
        with pytest.raises(Refused, match="fresh"):
            await _announce(session, anchor.url, stale)
        for _ in range(3 if not require_accounts else 20):
            with pytest.raises(Refused) as refused:
                await _announce(session, anchor.url, _announcement(KeyPair.generate(), url, issued_at=now))
            # Unbound keys are refused at once where accounts are required; otherwise the anchor
            # checks the URL first, and a tarpit does not answer.
            assert refused.value.status == (403 if require_accounts else 422)
        listed = await rpc.call(session, "GET", f"{anchor.url}/v1/nodes", NodeList, timeout_s=10)
        assert listed.nodes == ()
        assert pit.connections == (0 if require_accounts else 3)


async def test_a_call_has_one_deadline_across_silent_entry_nodes(
    tmp_path: Path, tarpit: tuple[Tarpit, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten silent entry nodes: the call gives up after two nodes' waits, not ten."""
    pit, url = tarpit
    monkeypatch.setattr(async_client_module, "NETWORK_SLACK_S", 0.2)  # each node's wait: 0.5 + 0.2 s
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
    async with AnchorServer(db_url, port=0) as anchor:
        keys = KeyPair.generate()
        async with AsyncClient(anchor.url, keys) as client:
            await client.deploy(write_function(tmp_path, "echo"))
            silent = [KeyPair.generate() for _ in range(10)]
            client._nodes = [NodeInfo(k.key_id, k.public.raw, url, ("python3.11",), 1.0, 64) for k in silent]
            client._nodes_fetched_at = asyncio.get_running_loop().time() + 3600  # the list is "fresh"
            with pytest.raises(InvokeTimeout, match="no answer"):
                await client.invoke("echo", 1, timeout_s=0.5)
    assert pit.connections <= async_client_module.ENTRY_TRIES_IN_TIME + 1


async def test_a_silent_entry_node_is_hedged_not_waited_out(
    tmp_path: Path, tarpit: tuple[Tarpit, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a deadline of one node's wait, only a hedge to the next node saves a call whose first
    entry node is silent: a second past the function's timeout, the next node is asked too."""
    from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
    from p2pfaas.node.daemon import NodeDaemon
    from p2pfaas.node.settings import NodeConfig

    pit, url = tarpit
    monkeypatch.setattr(async_client_module, "ENTRY_TRIES_IN_TIME", 1)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
    async with AnchorServer(db_url, port=0) as anchor:
        config = NodeConfig(
            anchor_url=anchor.url,
            key_path=tmp_path / "n" / "key",
            work_dir=tmp_path / "n",
            unpaid_owners=True,
        )
        executor = UnsandboxedProcessExecutor(work_dir=tmp_path / "run")
        async with (
            NodeDaemon(config, executor=executor) as node,
            AsyncClient(anchor.url, KeyPair.generate(), rng=random.Random(0)) as client,
        ):
            await client.deploy(write_function(tmp_path, "echo"))
            honest = NodeInfo(node.node_id, node.keys.public.raw, node.url, ("python3.11",), 1.0, 64)
            silent = KeyPair.generate()
            client._nodes = [
                honest,
                NodeInfo(silent.key_id, silent.public.raw, url, ("python3.11",), 1.0, 64),
            ]
            client._nodes_fetched_at = asyncio.get_running_loop().time() + 3600
            for i in range(6):  # the order of entry nodes follows each invocation id
                outcome = await client.invoke("echo", i, timeout_s=0.5)
                assert outcome.value == {"echo": i} and outcome.node_id == node.node_id
    assert pit.connections >= 1  # some calls met the silent node first, and were hedged


async def test_the_reachability_check_follows_no_redirect_and_picks_no_path(tmp_path: Path) -> None:
    """Found in review: an announced URL with a path, query or fragment chose what the anchor
    requested, redirects were followed, and the refusal told open ports from closed ones."""
    from aiohttp import web

    hits: list[str] = []

    async def inner(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        return web.Response(text="secret")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{inner_url}/metadata")

    inner_app, outer_app = web.Application(), web.Application()
    inner_app.router.add_route("*", "/{tail:.*}", inner)
    outer_app.router.add_route("*", "/{tail:.*}", redirect)
    runners = [web.AppRunner(inner_app), web.AppRunner(outer_app)]
    urls = []
    for runner in runners:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
    inner_url, outer_url = urls
    try:
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
        async with AnchorServer(db_url, port=0) as anchor, aiohttp.ClientSession() as session:
            now = wall_time()
            for shaped in (f"{inner_url}/admin?delete=yes#", f"{inner_url}/x", f"{inner_url}?q=1"):
                with pytest.raises(Refused) as refused:
                    await _announce(
                        session, anchor.url, _announcement(KeyPair.generate(), shaped, issued_at=now)
                    )
                assert refused.value.status == 400
            answers = set()
            for url in (outer_url, "http://127.0.0.1:1", inner_url):  # a redirect, a closed port, junk
                with pytest.raises(Refused) as refused:
                    await _announce(
                        session, anchor.url, _announcement(KeyPair.generate(), url, issued_at=now)
                    )
                assert refused.value.status == 422
                answers.add(str(refused.value).split(" at its URL")[0].rsplit(" ", 1)[0])
            assert len(answers) == 1  # the same words, whatever answered there
        assert hits == ["/v1/status"]  # only the direct check of inner_url; the redirect was not followed
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_the_reachability_check_dials_only_the_announcers_own_address_or_a_known_relay(
    tmp_path: Path,
) -> None:
    """#14's residual, closed in #12: the dial-back could be aimed at any host. Now it goes only to
    the address the announcement came from, or to the announcer's own relayed URL at this anchor or a
    node listed here; anything else is refused before a packet is sent."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'anchor.db'}"
    async with AnchorServer(db_url, port=0) as anchor, aiohttp.ClientSession() as session:
        now = wall_time()
        keys, other = KeyPair.generate(), KeyPair.generate()
        refused_urls = {
            "http://127.0.0.2:8080": "sees you at 127.0.0.1",  # another host than the announcer's
            "http://localhost.invalid:1": "sees you at 127.0.0.1",  # a name that does not resolve to it
            f"http://127.0.0.1:1/v1/relay/{other.key_id}": "no query",  # someone else's relay path
            f"http://127.0.0.1:1/v1/relay/{keys.key_id}": "not a relay to use",  # no such relay listed
        }
        for url, words in refused_urls.items():
            with pytest.raises(Refused) as refused:
                await _announce(session, anchor.url, _announcement(keys, url, issued_at=now))
            assert refused.value.status == 400 and words in str(refused.value), (url, refused.value)
        # The anchor's own relay is one to use: nobody is connected there as `keys`, so it is
        # unreachable (422), not refused as a shape.
        with pytest.raises(Refused) as refused:
            relayed = f"{anchor.public_url}/v1/relay/{keys.key_id}"
            await _announce(session, anchor.url, _announcement(keys, relayed, issued_at=now))
        assert refused.value.status == 422
