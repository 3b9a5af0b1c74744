"""Small probes run inside lab hosts (a TCP echo of the peer's address, and a client for it), and a
p2pfaas network started in a lab: the anchor, nodes and the anchor's list of them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from p2pfaas.lab import Host
from p2pfaas.lab.processes import LabProcesses, wait_for

PY = sys.executable

# Accepts connections until killed; answers each with the address it saw the connection come from.
ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen()
print("ready", flush=True)
while True:
    c, a = s.accept(); c.sendall(a[0].encode()); c.close()
"""

ECHO_CLIENT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print(s.recv(64).decode())
except OSError as exc:
    print("unreachable", type(exc).__name__)
"""


def start_echo(host: Host, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(host.argv(PY, "-c", ECHO_SERVER, str(port)), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def seen_as(client: Host, address: str, port: int, *, timeout_s: float = 2.0) -> str:
    """The address `address:port`'s echo server saw `client` connect from, or "unreachable ..."."""
    return client.run(
        PY, "-c", ECHO_CLIENT, address, str(port), str(timeout_s), timeout_s=timeout_s + 20
    ).strip()


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


# --- a p2pfaas network in the lab: an anchor on pub1, nodes, the anchor's list ----------------------

ANCHOR = "http://192.0.2.11:8700"

# Prints the anchor's node list as JSON: {node_id: url}.
LIST_NODES = """
import asyncio, json, sys
from p2pfaas.client import AsyncClient
from p2pfaas.identity import KeyPair
async def main():
    async with AsyncClient(sys.argv[1], KeyPair.generate()) as client:
        print(json.dumps({n.node_id: n.url for n in await client.nodes(refresh=True)}))
asyncio.run(main())
"""


def start_anchor(procs: LabProcesses, *extra: str) -> None:
    """The anchor on pub1 (its SQLite database in the processes' directory), once it answers."""
    db = f"sqlite+aiosqlite:///{procs.directory / 'anchor.db'}"
    procs.p2pfaas(
        "pub1", "anchor", "anchor", "serve", "--host", "0.0.0.0", "--port", "8700", "--dht-port", "8700",
        "--db", db, "--public-url", ANCHOR, "--channel-quiet", "5", *extra,
    )  # fmt: skip
    procs.wait_http("pub1", f"{ANCHOR}/v1/health", name="anchor")


def start_node(procs: LabProcesses, host: str, *extra: str) -> None:
    """A node on `host` (process name: the host's), process executor, joined through the anchor."""
    procs.p2pfaas(
        host, host, "node", "run", "--anchor", ANCHOR, "--host", "0.0.0.0", "--port", "8800",
        "--dht-port", "8800", "--peer", "192.0.2.11:8700", "--work-dir", str(procs.directory / host),
        "--executor", "process", "--allow-unsandboxed", *extra,
    )  # fmt: skip


def listed(procs: LabProcesses, host: str) -> dict[str, str]:
    """The anchor's live nodes as `host` sees them: {node_id: url}."""
    return dict(json.loads(procs.python(host, LIST_NODES, ANCHOR)))


def wait_listed(
    procs: LabProcesses, host: str, check: Callable[[dict[str, str]], bool], what: str, timeout_s: float = 120
) -> dict[str, str]:
    """Until the anchor's list passes `check`; prints every process's log tail if it never does."""
    seen: dict[str, str] = {}

    def ok() -> bool:
        seen.clear()
        seen.update(listed(procs, host))
        return check(seen)

    try:
        wait_for(ok, timeout_s=timeout_s, what=what, every_s=1.0)
    except Exception:
        for name in procs.procs:
            print(f"--- {name}\n{procs.tail(name)}")
        raise
    return seen
