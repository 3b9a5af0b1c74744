"""p2pfaas runtime shim: serves one function over a unix socket. STANDARD LIBRARY ONLY.

Runs inside every warm container (and, for the unsandboxed process executor, as a local
subprocess). It listens on a unix socket at once, imports the handler `module:function` from the
code directory on the first request (the host's boot-time ping), then runs invocations sent over it.

The socket's directory is a host directory bind-mounted into the container. The Docker executor
leaves it writable for uid 65534 only until its first connection and seals it (mode 0555, owned by
the host) before sending that ping: only this file's own code ever runs while it is writable, and
no code of the function (import-time code included) can write to the host's disk through it.

Framing, both directions: a frame is a 4-byte big-endian length followed by that many bytes; a
message is two frames, a JSON header then a raw body.
- request header `{"v": 1, "op": "invoke" | "ping"}`; body: the payload, JSON bytes.
- response header `{"v": 1, "ok", "error_type", "error_message", "traceback", "duration_s"}`, and
  `"logs": N` when the call printed anything; body: the JSON of the return value when ok, else
  empty; with `"logs"`, a third frame of N bytes: what the call wrote to `sys.stdout` and
  `sys.stderr`, interleaved, UTF-8, at most `--max-log-bytes` (64 KiB) and a line that says how
  much more was dropped. Only writes made by the thread running the call are its output (the
  shim routes them by thread, so concurrent calls keep their own); writes below Python's streams
  (`os.write(1, ...)`, a child process, `sys.stdout.buffer`) go to the container's own log.

Concurrency: one request at a time per connection. With `--concurrency 1` (the default) one
connection at a time, too: a second client waits in the listen backlog until the first disconnects,
and the function's process-wide state (globals, caches) stays single-threaded as authors expect.
With `--concurrency N` (the manifest's `concurrency`, for functions that declare themselves
thread-safe) up to N connections are served at once, each in its own thread; the host opens one
connection per invocation slot.

A call's processes end with it: when no request is in flight any more, the shim kills every
other process of the container (`end_strays`; only as the container's PID 1) before it answers,
so a forked (even `setsid`) child cannot outlive its call, and its CPU time until then is metered
as the call's. With `--concurrency N` that waits for the last call in flight. The function runs in
this very process and could undo this; the host does not rely on it: it counts the container's
tasks after each call and replaces an instance that runs more than the shim (`warm_pool`).

With `--orphan-exit-ms T` it exits once no connection from the host has been open for T ms
(`Watchdog`): the node holds a connection to each warm instance for its whole life, so that
happens only when the node is gone (killed, even by SIGKILL) and the container should stop.

What it does not do: enforce time limits (the host kills the instance) or memory limits (the
container's cgroup does; the process executor asks for an address-space rlimit with
--rlimit-as-mb); authenticate its peer (the socket's directory is reachable only by the host);
protect itself from the function, which runs in this very process. The host therefore treats
every byte from here as untrusted.

Its imports are kept to what serving needs (no argparse, re, pathlib or typing on the normal path):
they are part of every cold start.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from types import FrameType, SimpleNamespace, TracebackType

TYPE_CHECKING = False  # mypy takes this name as typing.TYPE_CHECKING; importing typing costs a cold start
if TYPE_CHECKING:
    from typing import Any

    Handler = Callable[[Any], Any]
    Header = dict[str, Any]

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_RESULT_BYTES = 6 * 1024 * 1024
MAX_TRACEBACK_CHARS = 32_000
MAX_MESSAGE_CHARS = 4_000
DEFAULT_MAX_LOG_BYTES = 64 * 1024  # a call's output kept; the rest is counted and dropped
EXIT_MEMORY = 86  # the shim itself ran out of memory: the host reports MemoryExceeded
EXIT_USAGE = 2
EXIT_ORPHANED = 0  # no connection from the node for the grace period (`Watchdog`): a clean exit

_LENGTH = struct.Struct(">I")
_CHUNK = 64 * 1024  # bytes asked of one recv; results up to this size go out in one send


def _valid_handler(spec: str) -> bool:
    """`module.sub:function`, each part a Python identifier starting with an ASCII letter or _."""
    module, _, function = spec.partition(":")
    return all(
        part.isidentifier() and (part[0].isascii() and (part[0].isalpha() or part[0] == "_"))
        for part in (*module.split("."), function)
    )


class ProtocolError(Exception):
    """The peer broke the framing; the connection is dropped, the shim carries on."""


# --- framing ------------------------------------------------------------------------------------


class Receiver:
    """Frames from one connection, read in chunks: a whole request (header and payload frames)
    usually arrives in one `recv`, not four."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._buf = bytearray()

    def _fill(self, size: int, *, at_frame_start: bool) -> bool:
        """At least `size` bytes buffered (True), or False on a clean end of stream before a frame."""
        buf = self._buf
        while len(buf) < size:
            chunk = self._conn.recv(min(max(size - len(buf), _CHUNK), 1 << 20))
            if not chunk:
                if at_frame_start and not buf:
                    return False
                raise ProtocolError("connection closed in the middle of a frame")
            buf += chunk
        return True

    def frame(self, *, max_bytes: int, at_message_start: bool = False) -> bytes | None:
        """One frame's bytes; None on a clean end of stream at a message boundary."""
        if not self._fill(_LENGTH.size, at_frame_start=at_message_start):
            return None
        (size,) = _LENGTH.unpack_from(self._buf)
        if size > max_bytes:
            raise ProtocolError(f"frame of {size} bytes exceeds the limit of {max_bytes}")
        end = _LENGTH.size + size
        self._fill(end, at_frame_start=False)
        data = bytes(self._buf[_LENGTH.size : end])
        del self._buf[:end]
        return data


def send_message(conn: socket.socket, header: Header, body: bytes, logs: bytes = b"") -> None:
    if logs:
        header["logs"] = len(logs)
    raw = json.dumps(header, separators=(",", ":")).encode()
    framed = _LENGTH.pack(len(raw)) + raw + _LENGTH.pack(len(body))
    tail = _LENGTH.pack(len(logs)) + logs if logs else b""
    if len(body) <= _CHUNK:
        conn.sendall(framed + body + tail)  # one send: one wakeup of the host
    else:
        conn.sendall(framed)
        conn.sendall(body)  # separately, so a large result is not copied once more
        if tail:
            conn.sendall(tail)


# --- a call's output ----------------------------------------------------------------------------


class Output:
    """What one call printed: up to `limit` bytes kept, the rest counted and dropped, so a call
    that prints a gigabyte costs its own time, not the shim's memory."""

    __slots__ = ("data", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.dropped = 0
        self.limit = limit

    def add(self, text: str) -> None:
        raw = text.encode("utf-8", "replace")
        room = max(self.limit - len(self.data), 0)
        if len(raw) <= room:
            self.data += raw
        else:
            self.data += raw[:room]
            self.dropped += len(raw) - room

    def encoded(self) -> bytes:
        if not self.dropped:
            return bytes(self.data)
        note = f"\n[p2pfaas: output truncated at {self.limit} bytes; {self.dropped} more bytes dropped]\n"
        return bytes(self.data) + note.encode()


_calls_output = threading.local()  # .out: the `Output` of the call this thread runs, if any


class RoutedStream:
    """`sys.stdout` and `sys.stderr` in the shim: a write from a thread running a call goes to that
    call's `Output`; any other write to the real stream."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def write(self, text: str) -> int:
        out = getattr(_calls_output, "out", None)
        if out is None:
            return int(self._real.write(text))
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        out.add(text)
        return len(text)

    def flush(self) -> None:
        if getattr(_calls_output, "out", None) is None:
            self._real.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer: the real stream's
        return getattr(self._real, name)


# --- running the function -----------------------------------------------------------------------


def _error_header(exc: BaseException, tb: TracebackType | None, duration_s: float) -> Header:
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return {
        "v": PROTOCOL_VERSION,
        "ok": False,
        "error_type": type(exc).__name__,
        "error_message": str(exc)[:MAX_MESSAGE_CHARS],
        # Keep the end: the innermost frames and the exception line are what the author needs.
        "traceback": text[-MAX_TRACEBACK_CHARS:],
        "duration_s": duration_s,
    }


def load_handler(code_dir: str | os.PathLike[str], spec: str) -> tuple[Handler | None, Header | None]:
    """Import `module:function` from `code_dir`: the handler, or the error header to answer with.

    A broken handler is the function author's error, so it is reported on every invocation
    rather than crashing the shim (which the host would take for a broken sandbox).
    """
    try:
        if not _valid_handler(spec):
            raise ValueError(f"handler must look like 'module:function', got {spec!r}")
        module_name, function_name = spec.split(":")
        sys.path.insert(0, os.fspath(code_dir))
        module = importlib.import_module(module_name)
        handler = getattr(module, function_name)
        if not callable(handler):
            raise TypeError(f"{spec} is not callable")
        return handler, None
    except BaseException as exc:  # the author's import-time code may raise anything, even SystemExit
        return None, _error_header(exc, exc.__traceback__, 0.0)


def invoke(handler: Handler, payload: bytes, *, max_result_bytes: int) -> tuple[Header, bytes]:
    """Run the handler on a JSON payload: the response header and body. Never raises Exception."""
    try:
        value = json.loads(payload) if payload else None
    except ValueError as exc:
        return _error_header(exc, exc.__traceback__, 0.0), b""
    started = time.perf_counter()
    try:
        result = handler(value)
    except BaseException as exc:  # sys.exit() or KeyboardInterrupt in a function must not end the shim
        duration_s = time.perf_counter() - started
        tb = exc.__traceback__
        # Skip this frame: the author's traceback starts at their handler.
        return _error_header(exc, tb.tb_next if tb and tb.tb_next else tb, duration_s), b""
    duration_s = time.perf_counter() - started
    try:
        body = json.dumps(result, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        return _error_header(exc, exc.__traceback__, duration_s), b""
    if len(body) > max_result_bytes:
        too_large = ValueError(f"result of {len(body)} bytes exceeds the limit of {max_result_bytes}")
        header = _error_header(too_large, None, duration_s)
        header["error_type"] = "ResultTooLarge"
        return header, b""
    header = {"v": PROTOCOL_VERSION, "ok": True, "error_type": "", "error_message": "", "traceback": ""}
    header["duration_s"] = duration_s
    return header, body


def invoke_capturing(
    handler: Handler, payload: bytes, *, max_result_bytes: int, max_log_bytes: int = DEFAULT_MAX_LOG_BYTES
) -> tuple[Header, bytes, bytes]:
    """Run the handler on a JSON payload: the response header, body and what the call printed.
    Never raises Exception."""
    output = Output(max_log_bytes)
    _calls_output.out = output
    try:
        header, body = invoke(handler, payload, max_result_bytes=max_result_bytes)
    finally:
        _calls_output.out = None
    return header, body, output.encoded()


# --- serving ------------------------------------------------------------------------------------


def _parse_request(raw: bytes) -> str:
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(f"request header is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported request header {header!r:.200}")
    op = header.get("op")
    if op not in ("invoke", "ping"):
        raise ProtocolError(f"unknown op {op!r:.100}")
    return str(op)


class Function:
    """The handler, imported on the first request rather than at startup.

    Until the host's first request nothing of the function runs in this process, only the shim:
    the host uses that window to seal the socket's directory (see `main`), so the function's code,
    import-time code included, never sees a writable host directory. Thread-safe: with
    `--concurrency N` the first requests may arrive together.
    """

    def __init__(self, code_dir: str | os.PathLike[str], spec: str) -> None:
        self._code_dir = code_dir
        self._spec = spec
        self._lock = threading.Lock()
        self._loaded = False
        self.handler: Handler | None = None
        self.load_error: Header | None = None

    def load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self.handler, self.load_error = load_handler(self._code_dir, self._spec)
                self._loaded = True


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
        op = _parse_request(raw)
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


_INT_OPTIONS = (
    "--rlimit-as-mb",
    "--concurrency",
    "--max-payload-bytes",
    "--max-result-bytes",
    "--max-log-bytes",
    "--orphan-exit-ms",
)
_STR_OPTIONS = ("--socket", "--code-dir", "--handler", "--deps-dir")


def _parse_args(argv: Sequence[str] | None) -> SimpleNamespace:
    """The options. The host always passes well-formed `--name value` pairs, parsed here without
    argparse (a cold-start cost); anything else goes to argparse for its usual errors and help."""
    args = _parse_fast(list(sys.argv[1:] if argv is None else argv))
    return args if args is not None else _parse_with_argparse(argv)


def _parse_fast(argv: list[str]) -> SimpleNamespace | None:
    env = os.environ.get
    values: dict[str, object] = {
        "socket": env("P2PFAAS_SOCKET", "/run/p2pfaas/shim.sock"),
        "code_dir": env("P2PFAAS_CODE_DIR", "/fn"),
        "handler": env("P2PFAAS_HANDLER"),
        "deps_dir": "",
        "rlimit_as_mb": 0,
        "orphan_exit_ms": 0,
        "concurrency": env("P2PFAAS_CONCURRENCY", "1"),
        "max_payload_bytes": DEFAULT_MAX_PAYLOAD_BYTES,
        "max_result_bytes": DEFAULT_MAX_RESULT_BYTES,
        "max_log_bytes": DEFAULT_MAX_LOG_BYTES,
    }
    if len(argv) % 2:
        return None
    for option, value in zip(argv[::2], argv[1::2], strict=True):
        if option not in _INT_OPTIONS + _STR_OPTIONS or value.startswith("--"):
            return None
        values[option[2:].replace("-", "_")] = value
    try:
        for option in _INT_OPTIONS:
            key = option[2:].replace("-", "_")
            values[key] = int(str(values[key]))
    except ValueError:
        return None
    concurrency = values["concurrency"]
    if not values["handler"] or not isinstance(concurrency, int) or not 1 <= concurrency <= 1000:
        return None
    return SimpleNamespace(**values)


def _parse_with_argparse(argv: Sequence[str] | None) -> SimpleNamespace:
    import argparse

    parser = argparse.ArgumentParser(description="p2pfaas runtime shim")
    env = os.environ.get
    parser.add_argument("--socket", default=env("P2PFAAS_SOCKET", "/run/p2pfaas/shim.sock"))
    parser.add_argument("--code-dir", default=env("P2PFAAS_CODE_DIR", "/fn"))
    parser.add_argument("--handler", default=env("P2PFAAS_HANDLER"))
    parser.add_argument("--deps-dir", default="", help="the function's dependency layer (site-packages)")
    parser.add_argument("--rlimit-as-mb", type=int, default=0, help="address-space limit (0: none)")
    parser.add_argument(
        "--orphan-exit-ms",
        type=int,
        default=0,
        help="exit once no connection has been open for this long (0: never)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(env("P2PFAAS_CONCURRENCY", "1")),
        help="connections (and invocations) served at once, each in a thread",
    )
    parser.add_argument("--max-payload-bytes", type=int, default=DEFAULT_MAX_PAYLOAD_BYTES)
    parser.add_argument("--max-result-bytes", type=int, default=DEFAULT_MAX_RESULT_BYTES)
    parser.add_argument("--max-log-bytes", type=int, default=DEFAULT_MAX_LOG_BYTES)
    args = parser.parse_args(argv)
    if not args.handler:
        parser.error("--handler (or P2PFAAS_HANDLER) is required")
    if not 1 <= args.concurrency <= 1000:
        parser.error("--concurrency must be in 1..1000")
    return SimpleNamespace(**vars(args))


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.rlimit_as_mb > 0:
        import resource  # Unix only, and only the process executor needs it

        limit = args.rlimit_as_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.stdout, sys.stderr = RoutedStream(sys.stdout), RoutedStream(sys.stderr)  # a call's output is its own
    # As PID 1 in a container SIGTERM is ignored unless handled; exit promptly instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    code_dir = args.code_dir
    os.chdir(code_dir)  # so a function can open its bundle's data files by relative path
    # Listen first, import the function on the first request (`Function`): the host seals the
    # socket's directory between the two.
    if args.deps_dir:
        # After the code directory (`load_handler` puts it first). A plain path entry, not
        # site.addsitedir: a layer's .pth files would run its code before the host seals the socket.
        sys.path.append(args.deps_dir)
    function = Function(code_dir, args.handler)
    socket_path = args.socket
    server = listen(socket_path, backlog=max(4, args.concurrency))
    try:
        serve(
            server,
            function,
            concurrency=args.concurrency,
            watchdog=Watchdog(args.orphan_exit_ms / 1000) if args.orphan_exit_ms > 0 else None,
            max_payload_bytes=args.max_payload_bytes,
            max_result_bytes=args.max_result_bytes,
            max_log_bytes=args.max_log_bytes,
        )
    except MemoryError:
        # Even the reply failed: die with a status the host maps to MemoryExceeded.
        os._exit(EXIT_MEMORY)
    finally:
        server.close()
        try:  # noqa: SIM105 - contextlib would be one more import on every cold start
            os.unlink(socket_path)
        except OSError:  # gone, or its directory sealed by the host (which removes it)
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
