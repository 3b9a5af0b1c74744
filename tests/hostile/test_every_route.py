"""Issue #22, item 2 (until the OpenAPI contract exists): hypothesis strategies against every route
of a live anchor and a live node. Whatever a stranger sends (bytes, wire messages of the wrong
kind, mutated genuine ones, JSON, odd path parameters, bearer tokens), the answer is never a 5xx,
never a hang, always an `ErrorReply` when it is an error, and a refused request changes no row of
the anchor's database.

The anchor (SQLite) and the node (process executor) run on their own event loop in a thread, so
hypothesis drives plain blocking HTTP from the test. Every route is found from the apps' routers:
a new route is covered without a line here.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pfaas import codec
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.client.account import AccountClient
from p2pfaas.db import open_database
from p2pfaas.db.schema import metadata
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.identity import KeyPair
from p2pfaas.messages import ErrorReply
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig
from tests.functions import write_function
from tests.test_codec import ALL_MESSAGES

EXAMPLES = 12  # per route: about 60 routes, 2 servers; bounded in count, each request in time
REQUEST_TIMEOUT_S = 20.0
RELAY_OR_BUSY = (502, 503, 504)  # a relay with nobody behind it, a busy node: real answers, not faults


@dataclass(frozen=True)
class Route:
    server: str  # "anchor" or "node"
    method: str
    template: str


@dataclass
class Live:
    anchor_url: str
    node_url: str
    db_url: str
    routes: list[Route]
    token: str
    loop: asyncio.AbstractEventLoop


def _routes(app: Any, server: str) -> list[Route]:
    found = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method in ("HEAD", "*"):
            continue
        template = resource.canonical
        if re.match(r"^/n/[0-9a-f]+/", template):
            continue  # the same routes under the node's identity prefix
        found.add(Route(server, route.method, template))
    return sorted(found, key=lambda r: (r.server, r.template, r.method))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("routes")
    ready: dict[str, Any] = {}
    started = threading.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        db_url = f"sqlite+aiosqlite:///{root / 'anchor.db'}"
        async with contextlib.AsyncExitStack() as stack:
            anchor = await stack.enter_async_context(AnchorServer(db_url, port=0))
            config = NodeConfig(
                anchor_url=anchor.url, key_path=root / "n" / "key", work_dir=root / "n", port=0,
                unpaid_owners=True,
            )  # fmt: skip
            node = await stack.enter_async_context(
                NodeDaemon(config, executor=UnsandboxedProcessExecutor(work_dir=root / "run"))
            )
            await node.announce()
            client = await stack.enter_async_context(AsyncClient(anchor.url, KeyPair.generate()))
            await client.deploy(write_function(root, "echo"))
            account = await stack.enter_async_context(AccountClient(anchor.url))
            await account.signup("mallory", "a long enough password", role="lessee")
            ready["token"] = account.token  # a real session: authenticated routes are reached too
            ready.update(
                anchor_url=anchor.url, node_url=node.url, db_url=db_url,
                routes=_routes(anchor.app, "anchor") + _routes(node.app, "node"),
                loop=asyncio.get_running_loop(),
            )  # fmt: skip
            stopping = asyncio.Event()
            ready["stop"] = stopping
            started.set()
            await stopping.wait()

    def thread() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by the fixture
            failure.append(exc)
            started.set()

    runner = threading.Thread(target=thread, name="live servers", daemon=True)
    runner.start()
    assert started.wait(120), "the servers did not start"
    if failure:
        raise failure[0]
    stopping = ready.pop("stop")
    try:
        yield Live(**ready)
    finally:
        ready["loop"].call_soon_threadsafe(stopping.set)
        runner.join(60)


def _row_counts(live: Live) -> dict[str, int]:
    async def count() -> dict[str, int]:
        async with open_database(live.db_url) as db:

            async def read(connection: Any) -> dict[str, int]:
                counts = {}
                for table in metadata.sorted_tables:
                    counts[table.name] = int(
                        await connection.scalar(sa.select(sa.func.count()).select_from(table))
                    )
                return counts

            return await db.run(read, what="count rows", write=False)

    return asyncio.run_coroutine_threadsafe(count(), live.loop).result(60)


def _path(template: str, values: list[str]) -> str:
    parts = iter(values)
    return re.sub(r"\{[^}]+\}", lambda _: quote(next(parts, "x"), safe=""), template)


def _send(url: str, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
    split = urlsplit(url)
    connection = http.client.HTTPConnection(split.hostname or "", split.port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type", ""), answer.read()
    finally:
        connection.close()


PATH_PARAMS = st.lists(
    st.one_of(
        st.text(alphabet="0123456789abcdef", min_size=0, max_size=80),
        st.text(min_size=1, max_size=40).filter(lambda t: "/" not in t),
        st.sampled_from(["..", "%2e%2e", "0" * 64, "-1", "9" * 30]),
    ),
    min_size=0,
    max_size=3,
)
BODIES = st.one_of(
    st.binary(max_size=2048),
    ALL_MESSAGES.map(codec.encode),  # a genuine message, of whatever kind: mostly the wrong one
    ALL_MESSAGES.map(codec.encode).flatmap(
        lambda b: (
            st.integers(0, max(0, len(b) - 1)).map(lambda i: b[:i] + bytes([b[i] ^ 0x41]) + b[i + 1 :])
            if b
            else st.just(b)
        )
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    ).map(lambda v: repr(v).encode()),
)
QUERIES = st.sampled_from(
    ["", "?after=-1", "?after=x", "?since=nan", "?by=%00", "?node=" + "a" * 300, "?hops=99", "?limit=1e9"]
)


def _check(status: int, content_type: str, body: bytes, what: str) -> None:
    assert status < 500 or status in RELAY_OR_BUSY, f"{what}: HTTP {status}: {body[:300]!r}"
    if status >= 400:
        assert "msgpack" in content_type, f"{what}: HTTP {status} as {content_type}: {body[:200]!r}"
        codec.decode_as(ErrorReply, body)  # the documented error shape


def test_every_route_answers_strangers_without_a_fault_or_a_change(live: Live) -> None:
    routes = live.routes
    assert {r.server for r in routes} == {"anchor", "node"} and len(routes) > 30
    before = _row_counts(live)
    changed: list[str] = []

    @settings(
        max_examples=EXAMPLES * len(routes), deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )  # fmt: skip
    @given(
        route=st.sampled_from(routes), params=PATH_PARAMS, body=BODIES, query=QUERIES,
        content_type=st.sampled_from(["application/x-msgpack", "application/json", "text/plain", ""]),
        auth=st.sampled_from(["", "Bearer " + live.token, "Bearer ../../etc", "Basic Zm9vOmJhcg=="]),
    )  # fmt: skip
    def attempt(
        route: Route, params: list[str], body: bytes, query: str, content_type: str, auth: str
    ) -> None:
        url = live.anchor_url if route.server == "anchor" else live.node_url
        path = _path(route.template, params) + query
        headers = {k: v for k, v in (("Content-Type", content_type), ("Authorization", auth)) if v}
        status, answered_type, answer = _send(url, route.method, path, body, headers)
        what = f"{route.server} {route.method} {path[:120]}"
        _check(status, answered_type, answer, what)
        after = _row_counts(live)
        if status >= 400 and after != before:  # a refusal must leave every table as it was
            changed.append(f"{what} -> {status}: {_diff(before, after)}")
        before.update(after)

    attempt()
    assert not changed, "refused requests changed the database:\n" + "\n".join(changed)


def _diff(before: dict[str, int], after: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {t: (before.get(t, 0), n) for t, n in after.items() if before.get(t, 0) != n}


def test_the_route_list_is_found_from_the_apps(live: Live) -> None:
    templates = {(r.server, r.method, r.template) for r in live.routes}
    assert ("node", "POST", "/v1/invoke") in templates and ("anchor", "POST", "/v1/receipts") in templates


def test_a_path_is_filled_from_a_template() -> None:
    assert _path("/v1/functions/{owner}/{name}", ["a b", "../x"]) == "/v1/functions/a%20b/..%2Fx"
