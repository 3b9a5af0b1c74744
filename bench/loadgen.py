"""A load generator for HTTP benchmarks: processes (each its own uvloop loop) that keep C requests in
flight on keep-alive connections for a fixed time, with a lean HTTP/1.1 client by default (they share
the cores with the node under test) or aiohttp's. Every answer is checked: HTTP 200 and, against a
node, a decoded `InvokeResult` that echoes the payload (one in 50 has its signature verified), or,
against the echo server, the body sent."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from bench.execkit import PAYLOAD
from p2pfaas import codec, signing
from p2pfaas.messages import InvokeResult
from p2pfaas.rpc import CONTENT_TYPE


def pct(sorted_s: list[float], q: float) -> float:
    return sorted_s[min(len(sorted_s) - 1, int(q * len(sorted_s)))] if sorted_s else float("nan")


# --- load generation (runs in child processes) ---------------------------------------------------


@dataclass(frozen=True)
class LoadJob:
    url: str
    bodies: list[bytes]
    clients: int
    seconds: float
    start_at: float  # time.time() at which to start, so all load processes start together
    check_node: bool
    client: str  # "lean" (`_LeanPoster`) or "aiohttp"


def _load_process(job: LoadJob, out: Any) -> None:
    import uvloop

    out.send(uvloop.run(_load(job)))


async def _load(job: LoadJob) -> tuple[int, int, list[float], float]:
    done = errors = 0
    latencies: list[float] = []
    # The node must get distinct invocations; the echo server may see the same bodies again.
    bodies = iter(job.bodies) if job.check_node else itertools.cycle(job.bodies)
    async with _client(job) as poster:
        posts = [await poster.connect() for _ in range(job.clients)]
        await asyncio.sleep(max(0.0, job.start_at - time.time()))
        stop = time.perf_counter() + job.seconds

        async def client(post: Post) -> None:
            nonlocal done, errors
            while (now := time.perf_counter()) < stop:
                body = next(bodies, None)
                if body is None:
                    raise RuntimeError("ran out of pre-signed requests: raise `needed` in the benchmark")
                status, answer = await post(body)
                latencies.append(time.perf_counter() - now)
                if status != 200:
                    errors += 1
                    continue
                if job.check_node:
                    result = codec.decode_as(InvokeResult, answer)
                    if done % 50 == 0:
                        signing.verify(result)
                    if not (result.ok and result.output == PAYLOAD):
                        errors += 1
                        continue
                elif answer != body:
                    errors += 1
                    continue
                done += 1

        cpu_before = time.process_time()
        await asyncio.gather(*(client(post) for post in posts))
        cpu_s = time.process_time() - cpu_before
    return done, errors, latencies, cpu_s


Post = Callable[[bytes], Awaitable[tuple[int, bytes]]]  # body -> (HTTP status, answer body)


class _Poster(Protocol):
    async def connect(self) -> Post: ...


@contextlib.asynccontextmanager
async def _client(job: LoadJob) -> AsyncIterator[_Poster]:
    if job.client == "aiohttp":
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=job.clients)) as session:
            yield _AiohttpPoster(session, job.url)
    else:
        lean = _LeanPoster(job.url)
        try:
            yield lean
        finally:
            lean.close()


class _AiohttpPoster:
    """aiohttp's client: one session, C connections from its pool."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session, self._url = session, url

    async def connect(self) -> Post:
        async def post(body: bytes) -> tuple[int, bytes]:
            headers = {"Content-Type": CONTENT_TYPE}
            async with self._session.post(self._url, data=body, headers=headers) as rsp:
                return rsp.status, await rsp.read()

        return post


class _LeanPoster:
    """A minimal HTTP/1.1 keep-alive client, one connection per client coroutine: the request in
    one write, the answer parsed by its Content-Length. It shares the two cores with the node, so
    it should cost as little as it can (aiohttp's client takes about 0.23 ms per request here)."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self._head = (
            f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
            f"Content-Type: {CONTENT_TYPE}\r\nContent-Length: "
        ).encode()
        self._transports: list[asyncio.Transport] = []

    async def connect(self) -> Post:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(_HTTPAnswers, self._host, self._port)
        self._transports.append(transport)
        head = self._head

        async def post(body: bytes) -> tuple[int, bytes]:
            answer = protocol.expect()
            transport.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
            return await answer

        return post

    def close(self) -> None:
        for transport in self._transports:
            transport.close()


class _HTTPAnswers(asyncio.Protocol):
    """Reads HTTP/1.1 responses with a Content-Length (what aiohttp's server sends for a body)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def expect(self) -> asyncio.Future[tuple[int, bytes]]:
        self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    def data_received(self, data: bytes) -> None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buf[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if not head.startswith(b"http/1.1 ") or at < 0 or b"\r\nconnection: close" in head:
            self._fail(ConnectionError(f"unexpected HTTP answer head: {head[:300]!r}"))
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end > 0 else len(head)])
        total = end + 4 + length
        if len(self._buf) < total:
            return
        body = bytes(self._buf[end + 4 : total])
        del self._buf[:total]
        waiter, self._waiter = self._waiter, None
        if waiter is None or self._buf:
            self._fail(ConnectionError("an HTTP answer nobody asked for"))
        elif not waiter.done():
            waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"connection lost: {exc!r}"))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self._waiter = None


def run_load(
    url: str,
    bodies: list[bytes],
    *,
    clients: int,
    procs: int,
    seconds: float,
    check_node: bool,
    client: str,
) -> Row:
    ctx = multiprocessing.get_context("spawn")
    per_proc = [max(1, clients // procs + (i < clients % procs)) for i in range(min(procs, clients))]
    start_at = time.time() + 1.5  # spawning and importing takes about a second
    share = len(bodies) // len(per_proc)
    pipes, workers = [], []
    for i, n in enumerate(per_proc):
        job = LoadJob(url, bodies[i * share : (i + 1) * share], n, seconds, start_at, check_node, client)
        receive, send = ctx.Pipe(duplex=False)
        worker = ctx.Process(target=_load_process, args=(job, send), daemon=True)
        worker.start()
        pipes.append(receive)
        workers.append(worker)
    done = errors = 0
    client_cpu_s = 0.0
    latencies: list[float] = []
    for receive, worker in zip(pipes, workers, strict=True):
        d, e, lat, cpu_s = receive.recv()
        worker.join()
        done, errors, client_cpu_s = done + d, errors + e, client_cpu_s + cpu_s
        latencies += lat
    latencies.sort()
    row = Row(clients, done / seconds, errors, pct(latencies, 0.5), pct(latencies, 0.99))
    row.client_cpu_us = client_cpu_s / max(done, 1) * 1e6
    return row


@dataclass
class Row:
    clients: int
    per_s: float
    errors: int
    p50_s: float
    p99_s: float
    node_cpu_us: float = float("nan")
    shim_cpu_us: float = float("nan")  # the containers' CPU (their parent cgroup), per invocation
    client_cpu_us: float = float("nan")
