"""Hole 8: job callbacks are no SSRF from volunteers' machines (p2pfaas/node/callbacks.py).

Only loopback traffic: a hook server on 127.0.0.1, names resolved by a fake resolver, and every
refusal of a private, link-local or otherwise special address is checked to happen before any
connection is attempted (the loop's connect calls are watched).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from p2pfaas import codec, rpc, signing
from p2pfaas.cli import build_parser
from p2pfaas.errors import ConfigError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Ack, InvokeRequest, InvokeResult
from p2pfaas.node.callbacks import CallbackPolicy, CallbackRefused, CallbackSender
from p2pfaas.node.jobs import Jobs
from p2pfaas.node.placement import PlacementConfig
from p2pfaas.node.settings import load_config_file
from p2pfaas.placement.wire import JobSubmit

LOOPBACK = CallbackPolicy.from_cidrs(["127.0.0.0/8"])


@dataclass
class Hook:
    url: str
    hits: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    found = Hook("")

    async def done(request: web.Request) -> web.Response:
        found.hits.append(request.path)
        found.bodies.append(await request.read())
        return rpc.reply(Ack())

    async def redirect(request: web.Request) -> web.Response:
        found.hits.append(request.path)
        raise web.HTTPFound("/done")

    app = web.Application()
    app.add_routes([web.post("/done", done), web.post("/redirect", redirect)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    found.url = f"http://127.0.0.1:{port}"
    try:
        yield found
    finally:
        await runner.cleanup()


class FakeResolver(AbstractResolver):
    """Names to fixed answers (a list per lookup, in turn), counting lookups."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        turns = self.answers[host]
        addresses = turns[0] if len(turns) == 1 else turns.pop(0)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail the test if anything tries to open a connection; returns the attempts."""
    attempts: list[Any] = []
    loop = asyncio.get_running_loop()

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise AssertionError(f"a connection was attempted: {args!r}")

    monkeypatch.setattr(loop, "sock_connect", refuse)
    monkeypatch.setattr(loop, "create_connection", refuse)
    return attempts


def result() -> InvokeResult:
    unsigned = InvokeResult("inv-1", "a" * 64, True, b"1", "", "", "", 0.1, False, None, b"", b"")
    return signing.sign(unsigned, KeyPair.generate())


async def test_a_callback_to_loopback_is_refused_by_default_and_reaches_nothing(hook: Hook) -> None:
    sender = CallbackSender()
    try:
        with pytest.raises(CallbackRefused, match="loopback"):
            await sender.send(f"{hook.url}/done", result())
        port = hook.url.rsplit(":", 1)[1]
        with pytest.raises(CallbackRefused, match=r"localhost' resolves to .*loopback"):
            await sender.send(f"http://localhost:{port}/done", result())  # a name for it: the same
    finally:
        await sender.aclose()
    assert hook.hits == []


async def test_a_callback_to_an_allowed_range_is_delivered(hook: Hook) -> None:
    sender = CallbackSender(LOOPBACK)
    try:
        sent = result()
        await sender.send(f"{hook.url}/done", sent)
    finally:
        await sender.aclose()
    assert hook.hits == ["/done"]
    assert codec.decode_as(InvokeResult, hook.bodies[0]) == sent


async def test_a_redirect_is_not_followed(hook: Hook) -> None:
    sender = CallbackSender(LOOPBACK)
    try:
        with pytest.raises(CallbackRefused, match="redirect"):
            await sender.send(f"{hook.url}/redirect", result())
    finally:
        await sender.aclose()
    assert hook.hits == ["/redirect"]  # never /done


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://10.0.0.1/x",
        "http://192.168.1.1/x",  # the router
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://100.64.0.1/x",  # carrier-grade NAT
        "http://0.0.0.0:80/x",
        "http://[::1]:9/x",
        "http://[fe80::1]/x",
        "http://[fc00::1]/x",
        "http://[::ffff:127.0.0.1]/x",  # IPv4-mapped loopback
        "http://[2002:c0a8:101::1]/x",  # 6to4 of 192.168.1.1
        "http://[64:ff9b::a9fe:a9fe]/x",  # NAT64 of 169.254.169.254
        "http://224.0.0.1/x",
        "http://lan.example/x",
        "http://metadata.example/x",
        "http://mixed.example/x",
        "http://v6.example/x",
        "ftp://lan.example/x",
        "http://user:pw@lan.example/x",
    ],
)
async def test_special_addresses_are_refused_before_any_connection(
    url: str, no_connections: list[Any]
) -> None:
    resolver = FakeResolver(
        {
            "lan.example": [["192.168.1.10"]],
            "metadata.example": [["169.254.169.254"]],
            "mixed.example": [["8.8.8.8", "10.1.2.3"]],  # every address must pass, not one
            "v6.example": [["fe80::1"]],
        }
    )
    sender = CallbackSender(inner_resolver=resolver)
    try:
        with pytest.raises(CallbackRefused):
            await sender.send(url, result())
    finally:
        await sender.aclose()
    assert no_connections == []


async def test_each_callback_connects_only_to_the_address_it_checked(hook: Hook) -> None:
    """DNS rebinding: the second answer for the same name points inside; it is checked, not trusted."""
    port = hook.url.rsplit(":", 1)[1]
    resolver = FakeResolver({"hook.example": [["127.0.0.1"], ["10.9.9.9"]]})
    sender = CallbackSender(LOOPBACK, inner_resolver=resolver)
    try:
        await sender.send(f"http://hook.example:{port}/done", result())
        with pytest.raises(CallbackRefused, match=r"10\.9\.9\.9 is a private address"):
            await sender.send(f"http://hook.example:{port}/done", result())
    finally:
        await sender.aclose()
    assert resolver.lookups == ["hook.example", "hook.example"]  # one lookup per callback, no cache
    assert hook.hits == ["/done"]


def test_the_policy_allows_public_addresses_and_configured_ranges() -> None:
    default = CallbackPolicy()
    for public in ("8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"):
        assert default.why_not(public) == "", public  # checked, never connected to
    assert "loopback" in default.why_not("127.0.0.1")
    assert "link-local" in default.why_not("169.254.169.254")
    assert LOOPBACK.why_not("127.0.0.2") == ""
    assert "private" in LOOPBACK.why_not("10.0.0.1")
    with pytest.raises(ConfigError):
        CallbackPolicy.from_cidrs(["not-a-network"])


def test_the_operator_allows_ranges_by_option_or_config_file(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["node", "run", "--callback-allow", "127.0.0.0/8", "--callback-allow", "10.0.3.0/24"]
    )
    assert args.callback_allow == ["127.0.0.0/8", "10.0.3.0/24"]
    config = tmp_path / "node.toml"
    config.write_text('callback_allow = ["127.0.0.0/8"]\n')
    assert load_config_file(config) == {"callback_allow": ("127.0.0.0/8",)}
    config.write_text("callback_allow = [8]\n")
    with pytest.raises(ConfigError):
        load_config_file(config)
    with pytest.raises(ConfigError):
        PlacementConfig(callback_allow=("999.0.0.0/8",))


@pytest.mark.parametrize(
    ("allow", "expected", "hits"),
    [((), "refused: 127.0.0.1 is a loopback", []), (("127.0.0.0/8",), "delivered", ["/done"])],
)
async def test_a_jobs_callback_status_says_what_happened(
    hook: Hook, allow: tuple[str, ...], expected: str, hits: list[str]
) -> None:
    """The node's job table with the real sender: refused by default (and said so), sent when allowed."""
    keys, node = KeyPair.generate(), KeyPair.generate()

    async def run(request: InvokeRequest) -> InvokeResult:
        unsigned = InvokeResult(
            request.invocation_id, request.digest, True, b"1", "", "", "", 0.1, False, None, b"", b""
        )
        return signing.sign(unsigned, node)

    sender = CallbackSender(CallbackPolicy.from_cidrs(allow))
    jobs = Jobs(run=run, callback=sender.send, callback_backoff_s=0.0)
    try:
        request = signing.sign(InvokeRequest("job-1", "a" * 64, b"1", 5.0, None, b"", b""), keys)
        jobs.submit(JobSubmit(request, f"{hook.url}/done"))
        await jobs.aclose()
    finally:
        await sender.aclose()
    assert jobs.status("job-1").callback.startswith(expected)
    assert hook.hits == hits
