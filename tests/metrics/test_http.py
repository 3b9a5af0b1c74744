"""GET /metrics's handler: who may read the figures."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from p2pfaas.metrics.http import CLIENT_HEADER, TRUSTED_PROXY, metrics_handler, parse_allow


async def test_only_allowed_callers_read_the_metrics() -> None:
    """Figures name the functions that run on a node and what it earned: loopback and the ranges an
    operator allows only; behind a worker process, the client address the worker names."""
    serve = metrics_handler(lambda: b"# nothing\n", parse_allow(["127.0.0.0/8", "198.51.100.0/24"]))
    public, internal = web.Application(), web.Application()
    internal[TRUSTED_PROXY] = True

    async def status(app: web.Application, headers: dict[str, str], peer: str | None) -> int:
        request = make_mocked_request("GET", "/metrics", headers=headers, app=app)
        if peer is not None:
            request = request.clone(remote=peer)
        try:
            return (await serve(request)).status
        except web.HTTPForbidden as refused:
            return refused.status

    assert await status(public, {}, "127.0.0.1") == 200
    assert await status(public, {}, "") == 403  # a stranger, through a relay's tunnel (a socket pair)
    assert await status(public, {}, "198.51.100.7") == 200
    assert await status(public, {}, "203.0.113.7") == 403
    assert await status(public, {CLIENT_HEADER: "127.0.0.1"}, "203.0.113.7") == 403  # not a worker's app
    assert await status(internal, {CLIENT_HEADER: "127.0.0.1"}, None) == 200
    assert await status(internal, {CLIENT_HEADER: "203.0.113.7"}, None) == 403
    assert await status(internal, {}, None) == 403
