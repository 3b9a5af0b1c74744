"""Small probes run inside lab hosts: a TCP echo of the peer's address, and a client for it."""

from __future__ import annotations

import subprocess
import sys

from p2pfaas.lab import Host

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
