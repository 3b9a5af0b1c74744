"""Real libraries on the simulator, unchanged: an aiohttp server and ClientSession, and stock kademlia."""

from __future__ import annotations

import asyncio
import hashlib
import io
import random

import aiohttp
import pytest
from aiohttp import web
from kademlia.network import Server as KademliaServer

from p2pfaas import sim

SERVER, CLIENT = "10.0.0.1", "10.0.0.2"


def make_app() -> web.Application:
    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=b"z" * int(request.query.get("n", "1")))

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=hashlib.sha256(body).digest() + str(request.remote).encode())

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["s"]))
        return web.Response(text="late")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/blob", blob)
    app.router.add_post("/echo", echo)
    app.router.add_get("/slow", slow)
    return app


async def serve(net: sim.InMemoryNetwork, host: str = SERVER, port: int = 8080) -> web.AppRunner:
    runner = web.AppRunner(make_app())
    await runner.setup()
    with net.on_host(host):
        await web.TCPSite(runner, host, port).start()
    return runner


def test_aiohttp_server_and_client_over_the_simulated_network() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        loop = asyncio.get_running_loop()
        runner = await serve(net)
        assert runner.addresses == [(SERVER, 8080)]
        with net.on_host(CLIENT):
            async with aiohttp.ClientSession() as session:
                # Large bodies both ways.
                async with session.get(f"http://{SERVER}:8080/blob", params={"n": str(20_000_000)}) as resp:
                    assert resp.status == 200
                    assert len(await resp.read()) == 20_000_000
                payload = random.Random(1).randbytes(8_000_000)
                # aiohttp reads a file-like body in its executor: work that must take no virtual time.
                async with session.post(f"http://{SERVER}:8080/echo", data=io.BytesIO(payload)) as resp:
                    body = await resp.read()
                assert body[:32] == hashlib.sha256(payload).digest()
                assert body[32:] == CLIENT.encode()  # the server saw the client's simulated address
                # Keep-alive: sequential requests reuse the one connection.
                assert net.stats.stream_connects == 1
                # Many concurrent requests: the connector opens its 100 connections and queues the rest.
                start = loop.time()

                async def fetch(i: int) -> int:
                    async with session.get(f"http://{SERVER}:8080/blob", params={"n": str(i)}) as resp:
                        return len(await resp.read())

                sizes = await asyncio.gather(*(fetch(i) for i in range(1, 501)))
                assert sizes == list(range(1, 501))
                assert net.stats.stream_connects == 100
                assert loop.time() - start < 10
                # Client timeouts run on virtual time.
                with pytest.raises(TimeoutError):
                    async with session.get(
                        f"http://{SERVER}:8080/slow",
                        params={"s": "60"},
                        timeout=aiohttp.ClientTimeout(total=5),
                    ):
                        pass
        await runner.cleanup()
        # After shutdown nothing listens: the next connect is refused.
        with net.on_host(CLIENT):
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientConnectorError) as info:
                    await session.get(f"http://{SERVER}:8080/blob")
                assert isinstance(info.value.os_error, ConnectionRefusedError)

    sim.run(main, seed=11)


def test_aiohttp_resolves_registered_names() -> None:
    async def main(net: sim.InMemoryNetwork) -> bytes:
        net.add_host(SERVER, name="anchor.sim")
        runner = await serve(net)
        try:
            with net.on_host(CLIENT):
                async with (
                    aiohttp.ClientSession() as session,
                    session.get("http://anchor.sim:8080/blob?n=3") as resp,
                ):
                    return await resp.read()
        finally:
            await runner.cleanup()

    assert sim.run(main, seed=1) == b"zzz"


def test_aiohttp_under_partition_and_crash() -> None:
    async def main(net: sim.InMemoryNetwork) -> None:
        runner = await serve(net)
        url = f"http://{SERVER}:8080/blob"
        with net.on_host(CLIENT):
            async with aiohttp.ClientSession() as session:
                net.partition([CLIENT], [SERVER])
                with pytest.raises(asyncio.TimeoutError):
                    await session.get(url, timeout=aiohttp.ClientTimeout(sock_connect=3))
                net.heal()
                async with session.get(url) as resp:
                    assert await resp.read() == b"z"
                # Crash during a slow response: the client sees the connection go.
                request = asyncio.create_task(session.get(f"http://{SERVER}:8080/slow?s=30"))
                await asyncio.sleep(1)
                net.crash(SERVER)
                with pytest.raises(aiohttp.ClientError):
                    await request
                with pytest.raises(asyncio.TimeoutError):
                    await session.get(url, timeout=aiohttp.ClientTimeout(sock_connect=3))
        await runner.cleanup()

    sim.run(main, seed=2)


def kademlia_run(seed: int, nodes: int = 50) -> tuple[list[object], str, float]:
    """Start `nodes` stock kademlia servers, each on its own host, bootstrap them, set and get keys."""

    async def main(net: sim.InMemoryNetwork) -> tuple[list[object], str, float]:
        loop = asyncio.get_running_loop()
        rng = random.Random(seed)
        servers: list[KademliaServer] = []
        try:
            for _ in range(nodes):
                host = net.add_host()
                # Stock kademlia draws node ids from the global random module; pass seeded ids instead.
                server = KademliaServer(node_id=rng.randbytes(20))
                with net.on_host(host):
                    await server.listen(8468)
                servers.append(server)
            first = (net.hosts[0], 8468)
            for server in servers[1:]:
                await server.bootstrap([first])
            for i in range(10):
                await servers[rng.randrange(nodes)].set(f"key-{i}", f"value-{i}")
            values = [await servers[rng.randrange(nodes)].get(f"key-{i}") for i in range(10)]
            return values, net.trace_digest(), loop.time() - sim.START_TIME_S
        finally:
            for server in servers:
                server.stop()

    return sim.run(main, seed=seed, options=sim.FaultOptions(jitter_s=0.005))


def test_stock_kademlia_bootstraps_and_serves_gets_on_the_simulator() -> None:
    values, digest, virtual_s = kademlia_run(seed=5)
    assert values == [f"value-{i}" for i in range(10)]
    assert 0 < virtual_s < 3600  # stays clear of kademlia's hourly refresh, which reads wall time
    again = kademlia_run(seed=5)
    assert again[1] == digest  # same seed, same delivery schedule
    assert kademlia_run(seed=6)[1] != digest


def http_trace(seed: int) -> str:
    async def main(net: sim.InMemoryNetwork) -> str:
        runner = await serve(net)
        with net.on_host(CLIENT):
            async with aiohttp.ClientSession() as session:

                async def fetch(n: int) -> None:
                    async with session.get(f"http://{SERVER}:8080/blob", params={"n": str(n)}) as resp:
                        await resp.read()

                await asyncio.gather(*(fetch(n) for n in range(1, 60)))
        await runner.cleanup()
        return net.trace_digest()

    return sim.run(main, seed=seed, options=sim.FaultOptions(jitter_s=0.01))


def test_http_traffic_replays_identically_per_seed() -> None:
    assert http_trace(1) == http_trace(1)
    assert http_trace(1) != http_trace(2)
