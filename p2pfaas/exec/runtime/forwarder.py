"""Inside a container with declared egress: 127.0.0.1:PORT forwarded to the node's egress proxy.

The container has no network interface but loopback. When the host passes `--egress-port` and
`--egress-socket`, the shim listens on the container's own 127.0.0.1:PORT (where `HTTPS_PROXY`
points) and carries each connection to the unix socket the node serves (`p2pfaas.exec.egress`),
which decides what may leave. One thread for every connection (a selector), so the shim's thread
count stays what the host expects. Stdlib only, like the rest of the shim.
"""

from __future__ import annotations

import selectors
import socket
import threading

MAX_CONNECTIONS = 32
CHUNK = 65536


def start(port: int, target: str) -> threading.Thread:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    thread = threading.Thread(target=_run, args=(listener, target), name="egress-forwarder", daemon=True)
    thread.start()
    return thread


def _run(listener: socket.socket, target: str) -> None:
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    peers: dict[socket.socket, socket.socket] = {}
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                _accept(listener, target, selector, peers)
                continue
            other = peers.get(sock)
            if other is None:
                continue
            try:
                data = sock.recv(CHUNK)
                if data:
                    other.sendall(data)
                    continue
            except OSError:
                pass
            for end in (sock, other):  # either side ended: both go
                peers.pop(end, None)
                selector.unregister(end)
                end.close()


def _accept(
    listener: socket.socket,
    target: str,
    selector: selectors.BaseSelector,
    peers: dict[socket.socket, socket.socket],
) -> None:
    client, _ = listener.accept()
    if len(peers) >= 2 * MAX_CONNECTIONS:
        client.close()
        return
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(target)
    except OSError:
        client.close()
        upstream.close()
        return
    peers[client], peers[upstream] = upstream, client
    selector.register(client, selectors.EVENT_READ)
    selector.register(upstream, selectors.EVENT_READ)
