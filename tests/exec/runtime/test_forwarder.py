"""The shim's egress forwarder (`runtime/forwarder.py`): 127.0.0.1:PORT carried to a unix socket,
byte for byte, each connection to its own upstream; a dead upstream closes the client's connection."""

from __future__ import annotations

import socket
import socketserver
import threading
from pathlib import Path

from p2pfaas.exec.runtime import forwarder


class Reverse(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line.rstrip(b"\n")[::-1] + b"\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connections_are_carried_to_the_unix_socket_each_on_its_own(tmp_path: Path) -> None:
    path = str(tmp_path / "egress.sock")
    server = socketserver.ThreadingUnixStreamServer(path, Reverse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = free_port()
        forwarder.start(port, path)
        a = socket.create_connection(("127.0.0.1", port), timeout=5)
        b = socket.create_connection(("127.0.0.1", port), timeout=5)
        with a, b, a.makefile("rb") as ra, b.makefile("rb") as rb:
            a.sendall(b"first\n")
            b.sendall(b"second\n")
            assert rb.readline() == b"dnoces\n" and ra.readline() == b"tsrif\n"
            big = b"x" * 300_000 + b"y\n"
            a.sendall(big)
            assert ra.readline() == big[::-1][1:] + b"\n"
    finally:
        server.shutdown()
        server.server_close()


def test_without_an_upstream_the_client_is_closed(tmp_path: Path) -> None:
    port = free_port()
    forwarder.start(port, str(tmp_path / "nobody.sock"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert client.recv(10) == b""
