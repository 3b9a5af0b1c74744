"""p2pfaas runtime shim: serves one function over a unix socket. STANDARD LIBRARY ONLY.

Runs inside every warm container (and, for the unsandboxed process executor, as a local
subprocess). It listens on a unix socket at once, imports the handler `module:function` from the
code directory on the first request (the host's boot-time ping), then runs invocations sent over it.

The socket's directory is a host directory bind-mounted into the container. The Docker executor
leaves it writable for uid 65534 only until its first connection and seals it (mode 0555, owned by
the host) before sending that ping: only the shim's own code ever runs while it is writable, and
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

Its files (all run from one directory, copied together into the image; see `runtime/__init__.py`):
this one, the entry point (options, `main`); `framing` (frames, answers, requests); `function` (the
handler imported, one call run); `output` (a call's prints); `serving` (connections, `end_strays`);
`watchdog`. Run by path, this file makes its directory the package `p2pfaas_shim` (PEP 366), so
the modules import each other without their directory on `sys.path`, where a function's own
modules (or a `watchdog` in its dependencies) would meet them. Their imports are kept to what
serving needs (no argparse, re, pathlib or typing on the normal path): they are part of every cold
start.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType, ModuleType, SimpleNamespace

if __name__ == "__main__" and not __package__:
    # Run by path (the container, the process executor): this directory is the package (PEP 366).
    _package = ModuleType("p2pfaas_shim")
    _package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
    sys.modules["p2pfaas_shim"] = _package
    __package__ = "p2pfaas_shim"

from .function import DEFAULT_MAX_RESULT_BYTES, Function
from .output import DEFAULT_MAX_LOG_BYTES, RoutedStream
from .serving import DEFAULT_MAX_PAYLOAD_BYTES, listen, serve
from .watchdog import Watchdog

EXIT_MEMORY = 86  # the shim itself ran out of memory: the host reports MemoryExceeded
EXIT_USAGE = 2

_INT_OPTIONS = (
    "--rlimit-as-mb",
    "--concurrency",
    "--max-payload-bytes",
    "--max-result-bytes",
    "--max-log-bytes",
    "--orphan-exit-ms",
    "--egress-port",
)
_STR_OPTIONS = ("--socket", "--code-dir", "--handler", "--deps-dir", "--egress-socket")


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
        "egress_port": 0,
        "egress_socket": "",
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
    parser.add_argument("--egress-port", type=int, default=0, help="forward 127.0.0.1:PORT (0: no egress)")
    parser.add_argument("--egress-socket", default="", help="... to the node's egress proxy here")
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
    if args.egress_port and args.egress_socket:  # declared egress: the node's proxy decides (forwarder.py)
        from .forwarder import start

        start(args.egress_port, args.egress_socket)
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
