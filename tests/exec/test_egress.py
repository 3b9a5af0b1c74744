"""The egress proxy (`p2pfaas.exec.egress`): CONNECT to the manifest's hosts only, never to the
volunteer's own networks unless the operator allows a range, bytes counted; real sockets on loopback
(the destination is a server of this test, allowed by range as a lab host would be)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from p2pfaas.exec.egress import EgressProxy, EgressRefused, EgressServer, connect_target, forbidden

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.fixture
async def destination() -> AsyncIterator[int]:
    """A server that answers every line with the line reversed."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line.rstrip(b"\n")[::-1] + b"\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def ask(path: Path, head: bytes) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(head)
    await writer.drain()
    status = await reader.readuntil(b"\r\n\r\n")
    return status, reader, writer


async def test_a_declared_host_is_reached_and_its_bytes_counted(tmp_path: Path, destination: int) -> None:
    proxy = EgressProxy(allow_networks=LOOPBACK)
    path = tmp_path / "egress.sock"
    server = await proxy.serve(path, [f"127.0.0.1:{destination}"], "fn")
    try:
        status, reader, writer = await ask(path, f"CONNECT 127.0.0.1:{destination} HTTP/1.1\r\n\r\n".encode())
        assert status.startswith(b"HTTP/1.1 200")
        writer.write(b"hello\n")
        await writer.drain()
        assert await reader.readline() == b"olleh\n"
        writer.close()
        await asyncio.sleep(0.05)
        assert (proxy.usage["fn"].sent, proxy.usage["fn"].received) == (6, 6)
    finally:
        await server.aclose()


@pytest.mark.parametrize(
    ("head", "status", "why"),
    [
        (b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n", b"403", b"not in the function's egress list"),
        (b"GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n", b"405", b"only CONNECT"),
        (b"\x00" * 9000, b"400", b"request head"),
    ],
)
async def test_anything_else_is_refused_with_a_reason(
    tmp_path: Path, destination: int, head: bytes, status: bytes, why: bytes
) -> None:
    proxy = EgressProxy(allow_networks=LOOPBACK)
    server = await proxy.serve(tmp_path / "egress.sock", [f"127.0.0.1:{destination}"], "fn")
    try:
        answer, _, writer = await ask(
            tmp_path / "egress.sock", head.replace(b"{port}", str(destination).encode())
        )
        body = await _.read()
        writer.close()
        assert answer.split(b" ")[1] == status and why in body, (answer, body)
        assert isinstance(server, EgressServer) and server.refused + (status == b"400") >= 1
    finally:
        await server.aclose()


async def test_the_volunteers_own_networks_are_refused_however_the_name_resolves(tmp_path: Path) -> None:
    """A declared name that resolves (or is rebound) to a LAN, loopback or link-local address is
    refused before any connection: the proxy connects only to an address it checked."""

    async def rebinding(host: str, port: int) -> list[str]:
        return ["192.168.1.1", "127.0.0.1", "169.254.169.254"]

    proxy = EgressProxy(resolve=rebinding)
    server = await proxy.serve(tmp_path / "egress.sock", ["api.example.org:443"], "fn")
    try:
        answer, reader, writer = await ask(
            tmp_path / "egress.sock", b"CONNECT api.example.org:443 HTTP/1.1\r\n\r\n"
        )
        body = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 403") and b"private" in body and b"loopback" in body
    finally:
        await server.aclose()


def test_which_addresses_are_public() -> None:
    assert forbidden("198.51.100.7", ()) is not None  # TEST-NET: documentation, not the internet
    assert forbidden("198.51.100.7", (ipaddress.ip_network("198.51.100.0/24"),)) is None  # a lab host
    assert forbidden("10.0.0.1", ()) == "10.0.0.1 is a private address"
    assert "loopback" in (forbidden("::ffff:127.0.0.1", ()) or "")
    assert "multicast" in (forbidden("224.0.0.1", ()) or "")
    assert forbidden("2001:4860:4860::8888", ()) is None
    assert forbidden("8.8.8.8", ()) is None  # (checked, never dialled)


def test_only_a_connect_to_a_declared_entry_is_carried() -> None:
    allowed = frozenset({"api.example.org:443"})
    assert connect_target(b"CONNECT API.example.org:443 HTTP/1.1\r\nHost: x\r\n\r\n", allowed) == (
        "api.example.org",
        443,
    )
    for head, status in (
        (b"CONNECT api.example.org:444 HTTP/1.1\r\n\r\n", 403),
        (b"CONNECT api.example.org:443\r\n\r\n", 403),  # no version: the target is not what it seems
        (b"POST / HTTP/1.1\r\n\r\n", 405),
        (b"CONNECT " + b"a" * 9000, 400),
    ):
        with pytest.raises(EgressRefused) as refused:
            connect_target(head, allowed)
        assert refused.value.status == status, head[:40]
