"""Execution engine figures (issue #4): warm throughput through one node, and cold start vs Docker.

**throughput**: one node runs as its own process (`p2pfaas node run --executor docker`, uvloop), a
no-op function (`def handle(e): return e`) deployed and warm. Load processes (each its own uvloop
loop) keep C requests in flight on keep-alive connections for a fixed time (a lean HTTP/1.1
client by default, as they share the cores with the node; `--client aiohttp` for aiohttp's), each
request a distinct pre-signed `InvokeRequest` (signing is the lessee's cost, done before the clock
starts); every answer is decoded and checked (HTTP 200, `ok`, the echoed payload), and one in 50
has its signature verified. Baseline in the same run: the same load against an aiohttp echo server
process (the HTTP ceiling of this machine with this client) and the node process's CPU per
invocation. Each `--workers` value is its own node, measured in the same run; the ratio column is
to the one-process node at the same load.

**coldstart**: the first invocation of a new function, (a) on the Docker executor directly and
(b) through a node (POST /v1/invoke; includes fetching the bundle from the anchor and verifying
it), against Docker's own create+start of the same container (its config copied from the
executor's container: same image, command, limits, mounts), interleaved one of each per round.
Also shown: create+start until the shim answers (Docker plus the Python runtime's start).

A benchmark, not a test: it asserts no figure. Wall time is `time.perf_counter`.

    .venv/bin/python -m bench.bench_exec throughput [--seconds 5] [--clients 1,8,32,64] [--procs 2]
        [--client lean|aiohttp] [--workers 1,2] [--metrics on|off|off,on]
    .venv/bin/python -m bench.bench_exec coldstart [--n 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from p2pfaas import codec, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.exec.base import FunctionSpec
from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.shim_client import ShimConnection
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeRequest, InvokeResult
from p2pfaas.rpc import CONTENT_TYPE

HANDLER = "def handle(e):\n    return e\n"
PAYLOAD = b'{"n":1}'


def write_function(root: Path, name: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "main.py").write_text(HANDLER + f"# {name}\n")
    (directory / "p2pfaas.toml").write_text(
        f'name = "{name}"\nversion = "1.0.0"\nruntime = "python3.11"\nhandler = "main:handle"\n'
        "memory_mb = 64\ntimeout_s = 5\ndeterministic = true\n"
    )
    return directory


def signed_requests(keys: KeyPair, digest: str, count: int, tag: str) -> list[bytes]:
    return [
        codec.encode(
            signing.sign(
                InvokeRequest(
                    invocation_id=f"{tag}-{i}",
                    digest=digest,
                    payload=PAYLOAD,
                    timeout_s=5.0,
                    voucher=None,
                    signer=b"",
                    signature=b"",
                ),
                keys,
            )
        )
        for i in range(count)
    ]


def requests_needed(seconds: float) -> int:
    """Pre-signed requests per level: more than a node answers (the echo server reuses them)."""
    return int(seconds * 12000) + 2000


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


# --- throughput -----------------------------------------------------------------------------------


def containers_cpu_ns(owner: str) -> int:
    """CPU used by all of a node's containers: its parent cgroup's counter (cgroup v1), else 0."""
    path = Path(f"/sys/fs/cgroup/cpuacct/p2pfaas-{owner[:16]}/cpuacct.usage")
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process and its live descendants (a node's worker processes)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # it exited meanwhile
        return 0
    return int(fields[11]) + int(fields[12]) + sum(cpu_ticks(int(child)) for child in children)


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), content_type=CONTENT_TYPE)


def _echo_process(port: int) -> None:
    import uvloop

    app = web.Application()
    app.add_routes([web.post("/echo", echo)])
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_for_port(port: int) -> None:
    for _ in range(600):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.asynccontextmanager
async def node_process(
    anchor_url: str, work_dir: Path, slots: int, workers: int = 1, *, metrics: bool = True
) -> AsyncIterator[tuple[int, str]]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "p2pfaas", "node", "run", "--executor", "docker", "--unpaid-owners", "--anchor", anchor_url),
        *("--work-dir", str(work_dir), "--port", str(port), "--peer", "127.0.0.1:9"),
        *("--cpus", "2", "--memory", "4g", "--slots", str(slots), "--queue-size", "1024"),
        *("--workers", str(workers)),
        *(() if metrics else ("--no-metrics",)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for_port(port)
        yield process.pid, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


async def throughput(args: argparse.Namespace) -> None:
    levels = [int(c) for c in args.clients.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    metric_modes = [m == "on" for m in args.metrics.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bex-", dir="/tmp"))
    keys = KeyPair.generate()
    needed = requests_needed(args.seconds)
    rows: dict[tuple[int, bool, int], Row] = {}  # (worker processes, metrics, clients) -> the node's row
    echo_rows: dict[int, Row] = {}
    try:
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{root / 'anchor.db'}", port=0) as anchor,
            AsyncClient(anchor.url, keys) as client,
        ):
            info = await client.deploy(write_function(root, "noop"))
            echo_port = free_port()
            ctx = multiprocessing.get_context("spawn")
            echo_server = ctx.Process(target=_echo_process, args=(echo_port,), daemon=True)
            echo_server.start()
            await wait_for_port(echo_port)
            for level in levels:
                bodies = signed_requests(keys, info.header.digest, needed, f"echo{level}")
                echo_rows[level] = await _level(args, f"http://127.0.0.1:{echo_port}/echo", bodies, level)
            echo_server.terminate()
            echo_server.join()
            for workers, metrics in itertools.product(worker_counts, metric_modes):
                for level, row in (
                    await _node_levels(
                        args, anchor.url, client, info.header.digest, keys, root, workers, levels, metrics
                    )
                ).items():
                    rows[workers, metrics, level] = row
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"warm no-op through one node: {args.seconds:g} s per level, {args.procs} load processes, "
        f"{os.cpu_count()} cores, node slots {args.slots}, {args.client} client, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'workers':>7} {'metrics':>7} {'clients':>7} {'node inv/s':>10} {'vs 1 worker':>11} "
        f"{'vs no metrics':>13} {'err':>3} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'CPU us/inv: node':>16} {'shim':>5} {'client':>6} {'2-core bound/s':>14} "
        f"{'echo req/s':>10}"
    )
    print(header)
    print("-" * len(header))
    for (workers, metrics, level), node in rows.items():
        # What 2 cores could answer if all they did was this: node + containers + load generator.
        bound = 2e6 / (node.node_cpu_us + node.shim_cpu_us + node.client_cpu_us)
        one, off = rows.get((1, metrics, level)), rows.get((workers, False, level))
        ratio = f"{node.per_s / one.per_s:.2f}x" if one is not None and one.per_s > 0 else "-"
        vs_off = f"{node.per_s / off.per_s:.3f}x" if off is not None and off.per_s > 0 else "-"
        print(
            f"{workers:>7} {'on' if metrics else 'off':>7} {node.clients:>7} {node.per_s:>10.0f} "
            f"{ratio:>11} {vs_off:>13} {node.errors:>3} "
            f"{node.p50_s * 1e3:>7.2f} {node.p99_s * 1e3:>7.2f} {node.node_cpu_us:>16.0f} "
            f"{node.shim_cpu_us:>5.0f} {node.client_cpu_us:>6.0f} {bound:>14.0f} "
            f"{echo_rows[level].per_s:>10.0f}"
        )


async def _level(
    args: argparse.Namespace, url: str, bodies: list[bytes], clients: int, *, check_node: bool = False
) -> Row:
    """One load level against `url`, with the run's load processes, duration and client."""
    return await asyncio.to_thread(
        run_load,
        url,
        bodies,
        clients=clients,
        procs=args.procs,
        seconds=args.seconds,
        check_node=check_node,
        client=args.client,
    )


async def _node_levels(
    args: argparse.Namespace,
    anchor_url: str,
    client: AsyncClient,
    digest: str,
    keys: KeyPair,
    root: Path,
    workers: int,
    levels: list[int],
    metrics: bool = True,
) -> dict[int, Row]:
    """One node process with `workers` worker processes, loaded at each level in turn."""
    needed = requests_needed(args.seconds)
    work_dir = root / f"node-{workers}-{'m' if metrics else 'n'}"
    owner = KeyPair.load_or_create(work_dir / "node.key").key_id
    rows: dict[int, Row] = {}
    async with node_process(anchor_url, work_dir, args.slots, workers, metrics=metrics) as (pid, url):
        for _ in range(100):  # the node announces itself to the anchor just after it binds
            if url in [n.url for n in await client.nodes(refresh=True)]:
                break
            await asyncio.sleep(0.05)
        for _ in range(8 * (workers - 1) + 1):  # warm every worker process: each on a new connection
            async with AsyncClient(anchor_url, keys) as fresh:
                warm = await fresh.invoke("noop", {"n": 1}, node_url=url)
            assert warm.value == {"n": 1}
        for level in levels:
            bodies = signed_requests(keys, digest, needed, f"w{workers}c{level}m{metrics:d}")
            ticks, shim_ns = cpu_ticks(pid), containers_cpu_ns(owner)
            node = await _level(args, f"{url}/v1/invoke", bodies, level, check_node=True)
            used_s = (cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK")
            answered = max(node.per_s * args.seconds, 1)
            node.node_cpu_us = used_s / answered * 1e6
            node.shim_cpu_us = (containers_cpu_ns(owner) - shim_ns) / answered / 1e3
            rows[level] = node
    return rows


# --- cold start -----------------------------------------------------------------------------------


def docker_create_start(client: Any, template: dict[str, Any], socket_dir: Path) -> tuple[Any, float]:
    """Create and start a copy of `template` (an inspected container) with its own socket dir."""
    host_config = dict(template["HostConfig"])
    host_config["Binds"] = [
        f"{socket_dir}:{bind.split(':')[1]}:rw" if bind.split(":")[1].startswith("/run") else bind
        for bind in host_config["Binds"]
    ]
    config = template["Config"]
    started = time.perf_counter()
    created = client.api.create_container(
        config["Image"],
        command=config["Cmd"],
        user=config["User"],
        host_config=host_config,
        labels={"p2pfaas.bench": "baseline"},
    )
    client.api.start(created["Id"])
    return created["Id"], time.perf_counter() - started


async def coldstart(args: argparse.Namespace) -> None:
    import docker

    from p2pfaas.exec.runtime_image import RUNTIME_IMAGE_TAG

    docker_client = docker.from_env()
    root = Path(tempfile.mkdtemp(prefix="bcs-", dir="/tmp"))
    keys = KeyPair.generate()
    samples: dict[str, list[float]] = {"docker": [], "docker_ready": [], "executor": [], "node": []}
    executor = DockerExecutor(owner_id="bench-cold", work_dir=root / "run", image=RUNTIME_IMAGE_TAG)
    await executor.start()
    try:
        async with (
            AnchorServer(f"sqlite+aiosqlite:///{root / 'anchor.db'}", port=0) as anchor,
            AsyncClient(anchor.url, keys) as client,
            node_process(anchor.url, root / "node", slots=4) as (_, url),
            aiohttp.ClientSession() as session,
        ):
            for _ in range(100):
                if url in [n.url for n in await client.nodes(refresh=True)]:
                    break
                await asyncio.sleep(0.05)
            template: dict[str, Any] = {}

            async def executor_cold(i: int) -> float:
                """(a) the executor's cold start of a new function."""
                code = root / f"fn{i}"
                shutil.copytree(root / "src" / f"fn{i}", code)
                spec = FunctionSpec(
                    digest=f"{i:064x}", code_dir=code, handler="main:handle", memory_mb=64, timeout_s=5
                )
                t0 = time.perf_counter()
                result = await executor.invoke(spec, PAYLOAD, timeout_s=30)
                elapsed_s = time.perf_counter() - t0
                assert result.ok and result.cold
                if not template:  # the config Docker's own create+start copies
                    [instance_id] = executor.instance_ids(spec.digest)
                    inspect = docker_client.api.inspect_container
                    template.update(await asyncio.to_thread(inspect, executor.container_id(instance_id)))
                return elapsed_s

            async def docker_cold(i: int) -> tuple[float, float]:
                """Docker's own create+start of the same container, and until its shim answers."""
                socket_dir = root / f"s{i}"
                socket_dir.mkdir(mode=0o777)
                socket_dir.chmod(0o777)
                t0 = time.perf_counter()
                baseline_id, docker_s = await asyncio.to_thread(
                    docker_create_start, docker_client, template, socket_dir
                )
                connection = None
                while connection is None:
                    try:
                        connection = await ShimConnection.open(socket_dir / "shim.sock", timeout_s=1)
                    except Exception:
                        await asyncio.sleep(0.001)
                ready_s = time.perf_counter() - t0
                await connection.aclose()
                await asyncio.to_thread(docker_client.api.remove_container, baseline_id, force=True)
                return docker_s, ready_s

            async def node_cold(i: int) -> float:
                """(b) through the node: a function it has never seen (fetch, verify, extract, start)."""
                info = await client.deploy(root / "src" / f"fn{i}")
                body = signed_requests(keys, info.header.digest, 1, f"cold{i}")[0]
                t0 = time.perf_counter()
                async with session.post(f"{url}/v1/invoke", data=body) as rsp:
                    answer = codec.decode_as(InvokeResult, await rsp.read())
                elapsed_s = time.perf_counter() - t0
                assert answer.ok and answer.cold, answer
                return elapsed_s

            for i in range(args.n + 1):  # round 0 warms caches (image layers, imports) and is dropped
                write_function(root / "src", f"fn{i}")
                # The order rotates, so that whatever one start leaves behind hits each path alike.
                if i % 3 == 0:
                    executor_s = await executor_cold(i)
                    docker_s, ready_s = await docker_cold(i)
                    node_s = await node_cold(i)
                elif i % 3 == 1:
                    docker_s, ready_s = await docker_cold(i)
                    node_s = await node_cold(i)
                    executor_s = await executor_cold(i)
                else:
                    node_s = await node_cold(i)
                    executor_s = await executor_cold(i)
                    docker_s, ready_s = await docker_cold(i)
                if i:
                    samples["docker"].append(docker_s)
                    samples["docker_ready"].append(ready_s)
                    samples["executor"].append(executor_s)
                    samples["node"].append(node_s)
    finally:
        await executor.aclose()
        for leftover in docker_client.containers.list(all=True, filters={"label": "p2pfaas.bench"}):
            leftover.remove(force=True)
        docker_client.close()
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(samples["docker"])
    load = os.getloadavg()[0]
    print(f"cold start of a new no-op function, n = {args.n}, load average {load:.1f} (ms; +p50 over Docker)")
    print(f"{'path':<62} {'p50':>7} {'p90':>7} {'+p50':>7}")
    print("-" * 86)
    labels = {
        "docker": "Docker create+start of the same container (baseline)",
        "docker_ready": "Docker create+start until its shim answers (no invoke)",
        "executor": "(a) DockerExecutor.invoke, first call of a new function",
        "node": "(b) node: POST /v1/invoke, function new to the node",
    }
    for key, label in labels.items():
        s = sorted(samples[key])
        print(
            f"{label:<62} {statistics.median(s) * 1e3:>7.1f} {pct(s, 0.9) * 1e3:>7.1f} "
            f"{(statistics.median(s) - base) * 1e3:>+7.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--seconds", type=float, default=5.0)
    tp.add_argument("--clients", default="1,8,32,64")
    tp.add_argument("--procs", type=int, default=2, help="load-generating processes")
    tp.add_argument("--slots", type=int, default=8, help="the node's --slots")
    tp.add_argument(
        "--metrics", default="on", choices=("on", "off", "on,off", "off,on"),
        help="the node's /metrics figures recorded or not (--no-metrics); both: one node each",
    )  # fmt: skip
    tp.add_argument(
        "--workers", default="1,2", help="the node's --workers (processes on its port), one node per value"
    )
    tp.add_argument(
        "--client", choices=("lean", "aiohttp"), default="lean", help="the load processes' HTTP client"
    )
    cs = sub.add_parser("coldstart")
    cs.add_argument("--n", type=int, default=15)
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(throughput(args) if args.what == "throughput" else coldstart(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
