"""The lessee's channel courier over real HTTP on 127.0.0.1: tickets go to the node that ran the call,
and to the anchor when that node cannot be reached (it vanished, its home went dark) or on closing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from p2pfaas.client.channels import ChannelCourier
from p2pfaas.messages import Ack, ChannelTicket, ChannelTickets, Voucher
from p2pfaas.rpc import error_middleware, read_message, reply
from tests.ledger.conftest import T0, keys, receipt, voucher

LESSEE, NODE, ANCHOR_KEYS = keys("lessee"), keys("node"), keys("anchor")
VOUCHER = voucher("v-1", LESSEE, 10_000, expires_at=T0 + 600, anchor=ANCHOR_KEYS)


@dataclass
class Inbox:
    """A server that keeps every channel ticket posted to it, or answers 503 while `down`."""

    url: str = ""
    down: bool = False
    tickets: list[ChannelTicket] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        offer = await read_message(request, ChannelTickets)
        if self.down:
            return web.Response(status=503, text="down")
        self.tickets.extend(offer.tickets)
        return reply(Ack("kept"))


@pytest.fixture
async def servers() -> AsyncIterator[tuple[Inbox, Inbox]]:
    runners, inboxes = [], []
    for _ in range(2):
        inbox = Inbox()
        app = web.Application(middlewares=[error_middleware])
        app.router.add_post("/v1/channels", inbox.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        inbox.url = f"http://127.0.0.1:{port}"
        runners.append(runner)
        inboxes.append(inbox)
    try:
        yield inboxes[0], inboxes[1]
    finally:
        for runner in runners:
            await runner.cleanup()


def courier(session: aiohttp.ClientSession, anchor: Inbox) -> ChannelCourier:
    return ChannelCourier(LESSEE, session, anchor.url, delivery_tries=2, delivery_pause_s=0.01)


async def run_two_calls(c: ChannelCourier, node: Inbox, voucher_: Voucher = VOUCHER) -> None:
    for n in range(2):
        paid = receipt(f"inv-{n}", node=NODE, lessee=LESSEE, voucher_id=voucher_.voucher_id, price_micro=700)
        assert c.accept(paid, voucher_, node_id=NODE.public.key_id, node_url=node.url) is not None


async def test_tickets_go_to_the_node_and_the_latest_to_the_anchor_on_closing(
    servers: tuple[Inbox, Inbox],
) -> None:
    node, anchor = servers
    async with aiohttp.ClientSession() as session:
        c = courier(session, anchor)
        await run_two_calls(c, node)
        await c.idle()
        assert node.tickets[-1].total_micro == 1_400 and anchor.tickets == []
        await c.aclose()  # the node might lose what it acknowledged, or leave: the anchor keeps it too
    assert [t.total_micro for t in anchor.tickets] == [1_400] and c.anchored == 1


async def test_tickets_a_node_cannot_take_go_to_the_anchor(servers: tuple[Inbox, Inbox]) -> None:
    node, anchor = servers
    node.down = True
    async with aiohttp.ClientSession() as session:
        c = courier(session, anchor)
        await run_two_calls(c, node)
        await c.idle()  # the deliveries give up on the node, and hand the anchor the latest
        assert [t.total_micro for t in anchor.tickets][-1] == 1_400
        handed = len(anchor.tickets)
        await c.aclose()  # nothing new to hand over on closing
    assert node.tickets == [] and len(anchor.tickets) == handed == c.anchored


async def test_closing_hands_the_anchor_what_no_node_acknowledged(servers: tuple[Inbox, Inbox]) -> None:
    node, anchor = servers
    node.down = True
    async with aiohttp.ClientSession() as session:
        c = ChannelCourier(LESSEE, session, anchor.url, flush_timeout_s=0.05, delivery_pause_s=60.0)
        await run_two_calls(c, node)
        await c.aclose()  # the node's deliveries still wait for a retry: cut short, the anchor gets it
    assert node.tickets == [] and [t.total_micro for t in anchor.tickets] == [1_400]
