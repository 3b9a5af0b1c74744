"""The shim's server: connections accepted, requests answered, and a call's processes ended with
it. STANDARD LIBRARY ONLY (see `shim.py`).

One request at a time per connection; with `concurrency` 1 one connection at a time (a second
client waits in the listen backlog), with N up to N connections, each in its own thread. What this
does not do: authenticate its peer (the socket's directory is reachable only by the host) or
survive the function, which runs in this very process.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
import threading

from .framing import MAX_HEADER_BYTES, PROTOCOL_VERSION, ProtocolError, Receiver, parse_request, send_message
from .function import Function, invoke_capturing
from .output import DEFAULT_MAX_LOG_BYTES

TYPE_CHECKING = False  # mypy takes this name as typing.TYPE_CHECKING; importing typing costs a cold start
if TYPE_CHECKING:
    from .framing import Header
    from .watchdog import Watchdog

DEFAULT_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


def end_strays() -> None:
    """Kill every process of the container but this one, and reap them.

    Only as PID 1 of the container's own pid namespace: there kill(-1) reaches exactly the
    container's other processes (a `setsid` child included, which a process group would miss),
    and every orphan is this process's child to reap. Anywhere else (the unsandboxed process
    executor) kill(-1) would reach every process of the user: nothing is done.
    """
    if os.getpid() != 1:
        return
    try:  # noqa: SIM105 - contextlib would be one more import on every cold start
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:  # nothing else runs
        pass
    while True:  # each dead process's children are reparented to us before it can be reaped
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


class Calls:
    """The requests in flight. When the last one ends, whatever they started ends with it
    (`end_strays`), before its answer is sent: what the children used until then is metered as
    that call's, and a call starting meanwhile waits, so nothing of its own is killed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    def begin(self) -> None:
        with self._lock:
            self._running += 1

    def end(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                end_strays()


def serve_connection(
    conn: socket.socket,
    function: Function,
    *,
    calls: Calls,
    max_payload_bytes: int,
    max_result_bytes: int,
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
) -> None:
    """Answer requests on one connection until the peer closes it."""
    receiver = Receiver(conn)
    while True:
        raw = receiver.frame(max_bytes=MAX_HEADER_BYTES, at_message_start=True)
        if raw is None:
            return
        op = parse_request(raw)
        payload = receiver.frame(max_bytes=max_payload_bytes)
        assert payload is not None
        calls.begin()  # a ping too: it may import the function, whose import-time code may fork
        logs = b""
        try:
            function.load()  # the host pings once, at boot, so the import counts as startup
            if op == "ping":
                header: Header = {"v": PROTOCOL_VERSION, "ok": True, "error_type": "", "error_message": ""}
                header.update(traceback="", duration_s=0.0)
                body = b""
            elif function.handler is None:
                assert function.load_error is not None
                header, body = function.load_error, b""
            else:
                header, body, logs = invoke_capturing(
                    function.handler, payload, max_result_bytes=max_result_bytes, max_log_bytes=max_log_bytes
                )
        finally:
            calls.end()
        send_message(conn, header, body, logs)


def listen(path: str | os.PathLike[str], *, backlog: int = 4) -> socket.socket:
    path = os.fspath(path)
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # left by a previous shim in the same directory
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    # The directory, not the socket's mode, is the access control; the host may be another uid.
    os.chmod(path, 0o666)
    server.listen(backlog)
    return server


def _serve_one(
    conn: socket.socket, function: Function, calls: Calls, watchdog: Watchdog | None, **limits: int
) -> None:
    with conn:
        if watchdog is not None:
            watchdog.opened(conn)
        try:
            serve_connection(conn, function, calls=calls, **limits)
        except (ProtocolError, OSError) as exc:
            print(f"p2pfaas shim: dropping connection: {exc}", file=sys.stderr, flush=True)
        finally:
            if watchdog is not None:
                watchdog.closed(conn)


def serve(
    server: socket.socket,
    function: Function,
    *,
    concurrency: int = 1,
    watchdog: Watchdog | None = None,
    **limits: int,
) -> None:
    calls = Calls()
    if watchdog is not None:
        watchdog.start()
    if concurrency <= 1:
        while True:
            conn, _ = server.accept()
            _serve_one(conn, function, calls, watchdog, **limits)
    slots = threading.BoundedSemaphore(concurrency)  # more clients wait in the listen backlog

    def run(conn: socket.socket) -> None:
        try:
            _serve_one(conn, function, calls, watchdog, **limits)
        finally:
            slots.release()

    while True:
        slots.acquire()
        conn, _ = server.accept()
        threading.Thread(target=run, args=(conn,), daemon=True).start()
