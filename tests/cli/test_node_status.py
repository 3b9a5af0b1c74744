"""`p2pfaas node status` (`p2pfaas.cli.node_status`): a report of what the node and the anchor say,
against stand-ins on 127.0.0.1; a node that does not answer is reported stopped. A real node and
anchor: tests/cli/test_node.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from p2pfaas import codec
from p2pfaas.cli.node_status import status_lines
from p2pfaas.messages import NodeList, NodeStatus
from p2pfaas.rpc import CONTENT_TYPE
from p2pfaas.trust.wire import NodeReputation

NODE_ID = "ab" * 20


@asynccontextmanager
async def serve(routes: dict[str, codec.Message]) -> AsyncIterator[str]:
    """A stand-in serving each message at its path (anything else: 404)."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=codec.encode(routes[request.path]), content_type=CONTENT_TYPE)

    app = web.Application()
    for path in routes:
        app.router.add_get(path, answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_node_that_does_not_answer_is_stopped() -> None:
    async with serve({}) as nothing:
        lines, running = await status_lines(nothing, nothing)
    assert not running and lines[0].startswith(f"node at {nothing}: stopped (it does not answer")


async def test_the_report_says_what_the_node_and_the_anchor_know() -> None:
    status = NodeStatus(
        NODE_ID, "https://192.0.2.7:8800/n/" + NODE_ID, "docker", True, 12, 2, 3, away="paused"
    )
    reputation = NodeReputation(NODE_ID, 5, 1, 4, 0, 0.5)
    async with (
        serve({"/v1/status": status}) as node,
        serve({"/v1/nodes": NodeList(()), f"/v1/reputation/{NODE_ID}": reputation}) as anchor,
    ):
        lines, running = await status_lines(node, anchor)
    assert running
    text = "\n".join(lines)
    assert lines[0] == f"node {NODE_ID} at {status.url}"
    assert "away: paused (docker)" in text
    assert f"directly, TLS pinned to its key; NOT listed by the anchor at {anchor}" in text
    assert "12 since it started, 2 running now" in text
    assert "figures      not readable here" in text  # this stand-in has no /metrics
    assert "streak 4, agreed 5, disagreed 1, lies 0, runs alone 50%" in text
