"""The shim's watchdog: it exits once its node is gone. STANDARD LIBRARY ONLY (see `shim.py`).

Used with `--orphan-exit-ms T`. What this does not do: notice a node that is alive but silent (the
node holds its connections open however idle they are), or outlast a function that disables it.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

EXIT_ORPHANED = 0  # no connection from the node for the grace period: a clean exit


class Watchdog:
    """Ends the process once the host has had no connection open to it for `grace_s`: its node
    is gone (the node holds one connection per warm instance for the instance's whole life, and
    the kernel closes it when the node dies, even by SIGKILL), so nobody will call or remove it.

    A thread checks every fraction of the grace period, so a call still running when the node died
    (a busy loop, a long sleep) ends too. Before the host's first connection the grace period runs
    from startup. As the container's PID 1, exiting stops the container and every process in it.
    The function could disable this (it runs in this process); the node's next start removes such
    leftovers (and they stay within their container's and the node's cgroup limits meanwhile).
    """

    def __init__(self, grace_s: float) -> None:
        import select  # only where there is a watchdog: a builtin module, cheap

        self._poll_flags = select.POLLHUP | select.POLLERR | select.POLLNVAL
        self._new_poll = select.poll
        self._grace_s = grace_s
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.add(conn)

    def closed(self, conn: socket.socket) -> None:
        with self._lock:  # before the descriptor is closed: it is never polled once reused
            self._open.discard(conn)

    def host_connected(self) -> bool:
        """Whether any open connection still has the host at its other end (no hang-up)."""
        with self._lock:
            poll = self._new_poll()
            for conn in self._open:
                poll.register(conn, self._poll_flags)
            hung_up = {fd for fd, events in poll.poll(0) if events & self._poll_flags}
            return any(conn.fileno() not in hung_up for conn in self._open)

    def start(self) -> None:
        threading.Thread(target=self._run, name="p2pfaas-watchdog", daemon=True).start()

    def _run(self) -> None:
        alone_since: float | None = time.monotonic()
        while True:
            time.sleep(min(self._grace_s / 4, 1.0))
            now = time.monotonic()
            if self.host_connected():
                alone_since = None
            elif alone_since is None:
                alone_since = now
            elif now - alone_since >= self._grace_s:
                print(
                    f"p2pfaas shim: no connection from the node for {self._grace_s:g} s: exiting",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(EXIT_ORPHANED)
