"""Warm invocation of a no-op function through one node, against the floor (issue #2).

Starts an anchor (SQLite in a temporary directory) and one node on loopback, deploys
`def handle(e): return e`, warms it, then times N sequential warm invocations along each path,
interleaved one call per path per round (in a rotating order) so machine noise hits all alike:

- floor: the payload straight to the warm instance's shim over its unix socket;
- http echo: an aiohttp echo endpoint on loopback, same request body (pure HTTP cost, no node);
- node: a pre-signed InvokeRequest POSTed on a keep-alive session to /v1/invoke, the InvokeResult
  decoded and its signature checked (the node's own overhead: HTTP, decode, verify, executor, sign);
- end to end: `AsyncClient.invoke`, which also fetches the node list from the anchor and signs.

It prints percentiles, the overhead of each path over the floor, and the CPU cost of the
codec/signature steps, measured in the same run. It is a benchmark, not a test: it asserts no
latency limit. Wall time is `time.perf_counter`, which benchmarks may read (library code may not).

    .venv/bin/python -m bench.bench_invoke [--n 2000] [--executor docker|process] [--loop auto]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import math
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from p2pfaas import codec, signing
from p2pfaas.anchor.server import AnchorServer
from p2pfaas.client import AsyncClient
from p2pfaas.exec.container_config import LABEL_OWNER
from p2pfaas.exec.docker_exec import DockerExecutor
from p2pfaas.exec.process_exec import UnsandboxedProcessExecutor
from p2pfaas.exec.shim_client import ShimConnection
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeRequest, InvokeResult
from p2pfaas.node.daemon import NodeDaemon
from p2pfaas.node.settings import NodeConfig
from p2pfaas.rpc import CONTENT_TYPE

FUNCTION_NAME = "noop"
HANDLER = "def handle(e):\n    return e\n"
TIMEOUT_S = 5.0

Call = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Options:
    n: int
    warmup: int
    executor: str
    payload_bytes: int


@dataclass
class Measured:
    """One path under measurement: a label and a coroutine function doing (and checking) one call."""

    label: str
    call: Call
    is_floor: bool = False
    vs_floor: bool = True
    samples_s: list[float] | None = None


# --- statistics and printing ---------------------------------------------------------------------


def percentile(sorted_s: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_s[max(0, math.ceil(q * len(sorted_s)) - 1)]


def print_table(paths: list[Measured]) -> None:
    floor = next(p for p in paths if p.is_floor)
    assert floor.samples_s is not None
    floor_p50 = statistics.median(floor.samples_s)
    head = f"{'path':<56} {'n':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}"
    print(head + f" {'+p50 ms':>8} {'x floor':>8}")
    print("-" * (len(head) + 18))
    for path in paths:
        assert path.samples_s is not None
        s = sorted(path.samples_s)
        p50 = statistics.median(s)
        cells = [percentile(s, q) * 1e3 for q in (0.90, 0.99)]
        row = f"{path.label:<56} {len(s):>6} {p50 * 1e3:>8.3f} {cells[0]:>8.3f} {cells[1]:>8.3f}"
        row += f" {statistics.fmean(s) * 1e3:>8.3f}"
        if path.is_floor:
            row += f" {'-':>8} {'1.00':>8}"
        elif path.vs_floor:
            row += f" {(p50 - floor_p50) * 1e3:>+8.3f} {p50 / floor_p50:>8.2f}"
        else:
            row += f" {'n/a':>8} {'n/a':>8}"
        print(row)


def cpu_cost_us(op: Callable[[], object], reps: int) -> float:
    """Median microseconds of `op`, timed in batches of 10 to stay above the clock's resolution."""
    per_op = []
    for _ in range(max(reps // 10, 1)):
        start = time.perf_counter()
        for _ in range(10):
            op()
        per_op.append((time.perf_counter() - start) / 10)
    return statistics.median(per_op) * 1e6


# --- the network under test ----------------------------------------------------------------------


def write_function(root: Path) -> Path:
    directory = root / FUNCTION_NAME
    directory.mkdir(parents=True)
    (directory / "main.py").write_text(HANDLER)
    (directory / "p2pfaas.toml").write_text(
        f'name = "{FUNCTION_NAME}"\nversion = "1.0.0"\nruntime = "python3.11"\nhandler = "main:handle"\n'
        f"memory_mb = 128\ntimeout_s = {TIMEOUT_S}\ndeterministic = false\n"
    )
    return directory


def make_executor(kind: str, work_dir: Path, owner_id: str) -> DockerExecutor | UnsandboxedProcessExecutor:
    if kind == "docker":
        return DockerExecutor(owner_id=owner_id, work_dir=work_dir / "containers")
    return UnsandboxedProcessExecutor(work_dir=work_dir / "processes")


def borrow_shim_connection(
    executor: DockerExecutor | UnsandboxedProcessExecutor, digest: str
) -> ShimConnection:
    """The warm instance's own shim connection.

    The shim serves one connection at a time (a second waits in its listen backlog until the
    first closes), and the pool keeps its connection open, so a fresh `ShimConnection.open` on
    the same socket would hang. Neither executor exposes its pool's instances (only ids, the
    run dir and `container_id`/`pid`), so this reaches into `_pool`; `WarmPool.instance()` is
    public. Safe only because every call here is sequential: one request in flight per connection.
    """
    ids = executor.instance_ids(digest)
    if len(ids) != 1:
        raise RuntimeError(f"expected one warm instance of {digest[:12]}, found {len(ids)}")
    connection = executor.shim_connection(ids[0])
    assert connection is not None
    return connection


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), content_type=CONTENT_TYPE)


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes([web.post("/echo", echo)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        yield f"http://127.0.0.1:{port}/echo"
    finally:
        await runner.cleanup()


async def remaining_containers(owner_id: str) -> list[str]:
    import docker

    def names() -> list[str]:
        client = docker.from_env()
        try:
            found = client.api.containers(all=True, filters={"label": f"{LABEL_OWNER}={owner_id}"})
            return [str(c["Names"]) for c in found]
        finally:
            client.close()

    return await asyncio.to_thread(names)


async def run(options: Options, root: Path) -> None:
    node_keys_path = root / "node" / "node.key"
    node_keys = KeyPair.load_or_create(node_keys_path)
    executor = make_executor(options.executor, root / "node", node_keys.key_id)
    payload = json.dumps({"pad": "x" * options.payload_bytes}, separators=(",", ":")).encode()
    payload_value = json.loads(payload)
    async with AnchorServer(f"sqlite+aiosqlite:///{root / 'anchor.db'}", port=0) as anchor:
        config = NodeConfig(
            unpaid_owners=True,  # among friends: owners run their own functions unpaid
            anchor_url=anchor.url,
            key_path=node_keys_path,
            work_dir=root / "node",
            executor=options.executor,
            allow_unsandboxed=options.executor == "process",
        )
        async with (
            NodeDaemon(config, executor=executor) as node,
            AsyncClient(anchor.url, KeyPair.generate()) as client,
            aiohttp.ClientSession() as session,
            echo_server() as echo_url,
        ):
            await node.announce()
            info = await client.deploy(write_function(root))
            digest = info.header.digest
            first = await client.invoke(FUNCTION_NAME, payload_value, node_url=node.url)
            assert first.cold and first.value == payload_value
            shim = borrow_shim_connection(executor, digest)
            if isinstance(executor, DockerExecutor):
                instance_id = executor.instance_ids(digest)[0]
                print(f"warm container {executor.container_id(instance_id)}")
                print(f"shim socket    {executor.run_dir.socket_path(instance_id)}")

            total = options.warmup + options.n
            requests = [
                codec.encode(
                    signing.sign(
                        InvokeRequest(
                            invocation_id=f"bench-{i}",
                            digest=digest,
                            payload=payload,
                            timeout_s=TIMEOUT_S,
                            voucher=None,
                            signer=b"",
                            signature=b"",
                        ),
                        client.keys,
                    )
                )
                for i in range(total)
            ]
            node_key = node.keys.public.raw
            invoke_url = f"{node.url}/v1/invoke"
            headers = {"Content-Type": CONTENT_TYPE}
            http_timeout = aiohttp.ClientTimeout(total=TIMEOUT_S + 10)
            counter = {"node": 0, "echo": 0}

            async def floor_call() -> None:
                result = await shim.invoke(payload, timeout_s=TIMEOUT_S)
                assert result.ok and result.output == payload, result

            async def echo_call() -> None:
                body = requests[counter["echo"]]
                counter["echo"] += 1
                async with session.post(echo_url, data=body, headers=headers, timeout=http_timeout) as rsp:
                    answer = await rsp.read()
                assert rsp.status == 200 and answer == body

            async def node_call() -> None:
                body = requests[counter["node"]]
                counter["node"] += 1
                async with session.post(invoke_url, data=body, headers=headers, timeout=http_timeout) as rsp:
                    answer = await rsp.read()
                assert rsp.status == 200, answer[:300]
                result = codec.decode_as(InvokeResult, answer)
                assert result.signer == node_key
                signing.verify(result)
                assert result.ok and not result.cold and result.output == payload, result

            async def client_call() -> None:
                outcome = await client.invoke(FUNCTION_NAME, payload_value, node_url=node.url)
                assert not outcome.cold and outcome.value == payload_value

            paths = [
                Measured("(a) floor: shim over unix socket, warm instance", floor_call, is_floor=True),
                Measured("(-) http echo: aiohttp loopback, same body, no node", echo_call, vs_floor=False),
                Measured("(b) node: pre-signed POST /v1/invoke + verify result", node_call),
                Measured("(c) end to end: AsyncClient.invoke (+anchor GET, sign)", client_call),
            ]
            for path in paths:
                path.samples_s = []
            for i in range(total):
                for k in range(len(paths)):
                    path = paths[(i + k) % len(paths)]
                    start = time.perf_counter()
                    await path.call()
                    elapsed = time.perf_counter() - start
                    if i >= options.warmup:
                        assert path.samples_s is not None
                        path.samples_s.append(elapsed)
            if executor.instance_ids(digest) != executor.instance_ids():
                raise RuntimeError("the pool started another instance during the run")
            if len(executor.instance_ids(digest)) != 1:
                raise RuntimeError("the warm instance was replaced during the run")

            print()
            print_table(paths)
            print_cpu_costs(requests[0], await _sample_result(session, invoke_url, requests[0]), node.keys)
    if isinstance(executor, DockerExecutor):
        left = await remaining_containers(node_keys.key_id)
        print(f"\ncontainers of this node left after shutdown: {len(left)} {left or ''}")


async def _sample_result(session: aiohttp.ClientSession, url: str, body: bytes) -> bytes:
    async with session.post(url, data=body, headers={"Content-Type": CONTENT_TYPE}) as rsp:
        return await rsp.read()


def print_cpu_costs(request_bytes: bytes, result_bytes: bytes, node_keys: KeyPair) -> None:
    """Where the node's CPU goes outside I/O: each codec and signature step alone."""
    request = codec.decode_as(InvokeRequest, request_bytes)
    result = codec.decode_as(InvokeResult, result_bytes)
    unsigned = InvokeResult(**{**vars(result), "signer": b"", "signature": b""})
    steps: list[tuple[str, Callable[[], object]]] = [
        ("node: decode InvokeRequest", lambda: codec.decode_as(InvokeRequest, request_bytes)),
        ("node: verify request signature", lambda: signing.verify(request)),
        ("node: sign + encode InvokeResult", lambda: codec.encode(signing.sign(unsigned, node_keys))),
        (
            "caller: decode InvokeResult + verify",
            lambda: signing.verify(codec.decode_as(InvokeResult, result_bytes)),
        ),
        ("client: sign + encode InvokeRequest", lambda: codec.encode(signing.sign(request, node_keys))),
    ]
    print(f"\n{'CPU cost per step (no I/O)':<56} {'median us':>10}")
    for label, op in steps:
        print(f"{label:<56} {cpu_cost_us(op, 2000):>10.1f}")


# --- entry point ---------------------------------------------------------------------------------


def loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory, f"uvloop {importlib.metadata.version('uvloop')}"
    return None, "asyncio (default selector loop)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="measured invocations per path")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured rounds first")
    parser.add_argument("--executor", choices=("docker", "process"), default="docker")
    parser.add_argument("--payload-bytes", type=int, default=64, help="padding in the JSON payload")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    args = parser.parse_args(argv)
    options = Options(n=args.n, warmup=args.warmup, executor=args.executor, payload_bytes=args.payload_bytes)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    factory, loop_name = loop_factory(args.loop)
    print(
        f"p2pfaas bench_invoke: executor={options.executor} n={options.n} warmup={options.warmup} "
        f"payload={options.payload_bytes + 10} B JSON\n"
        f"loop: {loop_name}; Python {platform.python_version()} on {platform.platform()}"
    )
    # A short root: unix socket paths must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="p2pb-", dir="/tmp"))
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(run(options, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
