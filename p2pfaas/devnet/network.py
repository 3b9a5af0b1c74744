"""A local network on one machine: an anchor and N volunteer nodes, each its own process.

`up` starts them (the anchor on an embedded SQLite ledger in the devnet directory), waits until
every node has announced itself, writes `state.json` and prints how to use the network; without
`--detach` it stays in the foreground and stops everything on Ctrl-C or when a process dies.
`demo` deploys the bundled sample function and invokes it on every node. `down` stops a detached
devnet, signalling only the process ids it recorded.

Nodes run functions in Docker when an engine is reachable (building the runtime image first if
needed); otherwise they fall back, loudly, to the unsandboxed process executor, which is allowed
here because a devnet is a trusted local tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

from p2pfaas.errors import LocalError, P2PFaaSError
from p2pfaas.lifecycle import process_alive
from p2pfaas.node.executors import docker_problem

STATE_FILE = "state.json"
START_TIMEOUT_S = 60.0


def _ensure_runtime_image() -> None:
    from p2pfaas.exec.runtime_image import build_runtime_image

    print("devnet: making sure the runtime image is built (the first build takes a minute or two)...")
    build_runtime_image(log=lambda line: print(f"  {line}", flush=True))


def _wait_http(url: str, *, timeout_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LocalError(f"{url} exited with status {proc.returncode}; see {log}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise LocalError(f"{url} did not answer within {timeout_s:.0f} s; see {log}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        # A new session: Ctrl-C in the terminal reaches only us, and we stop children in order.
        return subprocess.Popen(
            [sys.executable, "-m", "p2pfaas", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(pids: list[int], *, grace_s: float = 15.0) -> None:
    """SIGTERM our own processes (nodes first, anchor last), then SIGKILL what lingers."""
    for pid in pids:
        if process_alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for pid in pids:
        while process_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child (a detached devnet's `down`)
        os.waitpid(pid, os.WNOHANG)


def _read_state(directory: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        raise LocalError(f"no devnet state in {directory}; start one with `p2pfaas devnet up`") from None
    return state


def up(directory: Path, *, nodes: int, port: int, detach: bool, executor: str = "auto") -> int:
    if not 1 <= nodes <= 64:
        raise LocalError("--nodes must be between 1 and 64")
    directory.mkdir(parents=True, exist_ok=True)
    state_path = directory / STATE_FILE
    if state_path.exists():
        old = json.loads(state_path.read_text())
        if any(process_alive(pid) for pid in old.get("pids", [])):
            raise LocalError(f"a devnet from {directory} is running; stop it with `p2pfaas devnet down`")
    # `executor="process"` skips Docker even where it runs (fast tests of many node processes).
    no_docker = "the process executor was asked for" if executor == "process" else docker_problem()
    if no_docker:
        print(f"devnet: no Docker engine ({no_docker}); nodes will run functions UNSANDBOXED")
    else:
        _ensure_runtime_image()

    anchor_url = f"http://127.0.0.1:{port}"
    db = f"sqlite+aiosqlite:///{(directory / 'anchor.db').resolve()}"
    anchor_log = directory / "anchor.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The anchor's bootstrap DHT node listens on the same number in UDP; nodes join through it.
        serve = ["anchor", "serve", "--port", str(port), "--dht-port", str(port), "--db", db]
        anchor = _spawn([*serve, "--public-url", anchor_url], anchor_log)  # what key claims must name
        procs.append(anchor)
        _wait_http(f"{anchor_url}/v1/health", timeout_s=START_TIMEOUT_S, proc=anchor, log=anchor_log)
        node_urls = []
        for i in range(nodes):
            node_port = port + 1 + i
            work = (directory / f"node-{i}").resolve()
            log = directory / f"node-{i}.log"
            executor = "process" if no_docker else "docker"
            proc = _spawn(
                [
                    "node",
                    "run",
                    "--anchor",
                    anchor_url,
                    "--port",
                    str(node_port),
                    "--dht-port",
                    str(node_port),
                    "--peer",
                    f"127.0.0.1:{port}",
                    "--work-dir",
                    str(work),
                    "--executor",
                    executor,
                    "--allow-unsandboxed",
                    "--unpaid-owners",  # among friends: lessees run their own functions unpaid
                ],
                log,
            )
            procs.append(proc)
            node_urls.append(f"http://127.0.0.1:{node_port}")
            _wait_http(f"{node_urls[-1]}/v1/status", timeout_s=START_TIMEOUT_S, proc=proc, log=log)
        # Nodes first, anchor last, when stopping.
        pids = [p.pid for p in procs[1:]] + [anchor.pid]
        state_path.write_text(
            json.dumps({"anchor_url": anchor_url, "nodes": node_urls, "pids": pids}, indent=2)
        )
    except BaseException:
        _stop([p.pid for p in reversed(procs)])
        raise
    print(
        f"\ndevnet up: anchor {anchor_url}, {nodes} node(s) "
        f"({'UNSANDBOXED processes' if no_docker else 'Docker containers'})\n"
        + "".join(f"  node {u}   log {directory}/node-{i}.log\n" for i, u in enumerate(node_urls))
        + f"\nTry it:\n  p2pfaas devnet demo --dir {directory}\n"
        f"or by hand:\n  export P2PFAAS_ANCHOR={anchor_url}\n  p2pfaas keys new\n"
        f'  p2pfaas fn deploy {_sample_dir()}\n  p2pfaas fn invoke hello \'{{"name": "you"}}\'\n'
    )
    if detach:
        print(f"Stop it with: p2pfaas devnet down --dir {directory}")
        return 0
    print("Ctrl-C stops the network.")
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [p for p in procs if p.poll() is not None]
        print(f"devnet: process {dead[0].pid} exited with {dead[0].returncode}; stopping the network")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(pids)
        state_path.unlink(missing_ok=True)


def down(directory: Path) -> int:
    state = _read_state(directory)
    _stop([int(pid) for pid in state.get("pids", [])])
    (directory / STATE_FILE).unlink(missing_ok=True)
    print("devnet stopped")
    return 0


def _sample_dir() -> Path:
    return Path(str(resources.files("p2pfaas") / "sample" / "hello"))


def demo(directory: Path) -> int:
    state = _read_state(directory)
    return asyncio.run(_demo(state["anchor_url"], list(state["nodes"]), directory / "lessee.key"))


async def _show_discovery(anchor_url: str, *, expected: int) -> None:
    """What a client without a node list sees: the nodes' capacity adverts in the DHT, nearest first."""
    import random
    from urllib.parse import urlsplit

    from p2pfaas.client.discovery import Discovery

    url = urlsplit(anchor_url)  # devnet's anchor runs its bootstrap DHT node on its own port number
    async with Discovery([(url.hostname or "127.0.0.1", url.port or 0)], rng=random.Random(), ttl_s=0) as dht:
        for _ in range(20):  # a node that just started may still be publishing its first advert
            found = await dht.find_nearby("python3.11", count=10)
            if len(found) >= expected:
                break
            await asyncio.sleep(0.5)
    print(f"the DHT advertises {len(found)} node(s), nearest first:")
    for advert in found:
        c = advert.capacity
        print(
            f"  {advert.url} {c.free_slots} free slot(s), {c.cores} core(s), {c.memory_mb} MB, "
            f"{c.price_per_cpu_s} micro-credits per CPU-s"
        )
    print(f"(`p2pfaas fn invoke NAME --dht-seed {url.hostname}:{url.port}` picks entry nodes this way)")


async def _demo(anchor_url: str, node_urls: list[str], key_path: Path) -> int:
    from p2pfaas.client import AsyncClient
    from p2pfaas.devnet.accounts import devnet_wallet
    from p2pfaas.errors import FunctionFailed
    from p2pfaas.identity import KeyPair

    keys = KeyPair.load_or_create(key_path)
    wallet_for = devnet_wallet(anchor_url, key_path.parent, keys)  # granted credits buy vouchers (issue #5)
    async with AsyncClient(anchor_url, keys) as client, wallet_for as wallet:
        client.wallet = wallet
        info = await client.deploy(_sample_dir())
        print(f"deployed {info.name} {info.header.manifest.version}, sha256 {info.header.digest[:16]}…")
        failures = 0
        for round_ in range(2):  # the second round runs on warm instances
            for i, url in enumerate(node_urls):
                payload = {"name": f"node {i}", "numbers": list(range(i + round_ + 2))}
                try:
                    out = await client.invoke("hello", payload, node_url=url)
                except P2PFaaSError as exc:
                    failures += 1
                    print(f"  {url}: FAILED: {type(exc).__name__}: {exc}")
                    continue
                print(
                    f"  {url} node {out.node_id[:12]} {'cold' if out.cold else 'warm'} "
                    f"{out.duration_s * 1000:6.2f} ms -> {json.dumps(out.value)}"
                )
        try:
            await client.invoke("hello", {"fail": True})
        except FunctionFailed as exc:
            print(f"a function that raises comes back as a typed error: FunctionFailed: {exc}")
        print(f"paid with {wallet.vouchers_bought} voucher(s); {wallet.remaining_micro} micro-credits left")
    await _show_discovery(anchor_url, expected=len(node_urls))
    return 1 if failures else 0
