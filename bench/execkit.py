"""What the execution benchmarks share (bench_exec, bench_coldstart): the no-op function and its
pre-signed requests, a node as its own process, an aiohttp echo server process (the HTTP ceiling),
and CPU counters for a process tree and a node's containers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from p2pfaas import codec, signing
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeRequest
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


def echo_process(port: int) -> None:
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
