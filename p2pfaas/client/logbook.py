"""The lessee's own record of what its calls printed: one JSON line per call that printed anything.

A node signs each call's output into its result (`InvokeResult.logs`, at most 64 KiB, captured by
the runtime) and keeps the result for a while (a retry of the same invocation id gets it again);
the lessee's client appends it here, per function (`<directory>/<function>.jsonl`), so that
`p2pfaas fn logs NAME [--invocation ID] [--follow]` can show it later. A file that reaches
`MAX_FILE_BYTES` is rotated once (`.1`), so a function that prints on every call costs the lessee's
disk at most twice that. Nothing here talks to the network.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from p2pfaas.errors import LocalError

__all__ = ["LogBook", "LogEntry"]

MAX_FILE_BYTES = 16 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class LogEntry:
    at: float  # wall time the client received the result
    function: str
    invocation_id: str
    node_id: str
    ok: bool
    logs: str

    def render(self) -> str:
        """For a terminal: a header line, then the output with its control characters shown as
        escapes (`terminal_safe`)."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        outcome = "ok" if self.ok else "failed"
        head = f"--- {when} {self.invocation_id} on node {self.node_id[:12]} ({outcome})"
        return terminal_safe(f"{head}\n{self.logs.rstrip()}") + "\n"


# C0 controls but tab and newline, DEL, and C1 controls (0x9b is a CSI on its own in some terminals).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """`text` (a function's output: a stranger's bytes, relayed by a stranger's node) with every
    control character but tab and newline written as an escape, so that printing it cannot move
    the cursor, rewrite the screen, set the window title or answer for the terminal."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class LogBook:
    """The calls' output of one lessee, under `directory` (`p2pfaas.environment.logs_dir()`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, function: str) -> Path:
        base = function.split("@", 1)[0]
        if not _NAME.fullmatch(base):
            raise LocalError(f"not a function name: {function[:64]!r}")
        return self.directory / f"{base}.jsonl"

    def record(self, entry: LogEntry) -> None:
        """Append `entry` (a call with no output is not recorded)."""
        if not entry.logs:
            return
        path = self.path(entry.function)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry.__dict__, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            if path.stat().st_size + len(line) > MAX_FILE_BYTES:
                os.replace(path, path.with_suffix(".jsonl.1"))
        except FileNotFoundError:
            pass
        with path.open("a", encoding="utf-8") as file:
            file.write(line)

    def entries(self, function: str, *, invocation_id: str | None = None) -> list[LogEntry]:
        """The recorded output of `function`'s calls, oldest first (of one call, with `invocation_id`)."""
        path = self.path(function)
        found: list[LogEntry] = []
        for candidate in (path.with_suffix(".jsonl.1"), path):
            found += [e for e in _read(candidate) if invocation_id in (None, e.invocation_id)]
        return found

    def follow(self, function: str, *, poll_s: float = 0.5) -> Iterator[LogEntry]:
        """The entries recorded from this call on, as they come (until the caller stops iterating)."""
        path = self.path(function)
        return _follow(path, path.stat().st_size if path.exists() else 0, poll_s)


def _follow(path: Path, offset: int, poll_s: float) -> Iterator[LogEntry]:
    """Entries appended to `path` past `offset`, polled every `poll_s`."""
    while True:
        size = path.stat().st_size if path.exists() else 0
        if size < offset:  # rotated: the new file starts from its beginning
            offset = 0
        if size > offset:
            with path.open("rb") as file:
                file.seek(offset)
                chunk = file.read(size - offset)
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits
            offset += len(complete)
            yield from _parse(complete.decode("utf-8", "replace"))
        time.sleep(poll_s)


def _read(path: Path) -> list[LogEntry]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return list(_parse(text))


def _parse(text: str) -> Iterator[LogEntry]:
    for line in text.splitlines():
        try:
            raw = json.loads(line)
            yield LogEntry(
                float(raw["at"]),
                str(raw["function"]),
                str(raw["invocation_id"]),
                str(raw["node_id"]),
                bool(raw["ok"]),
                str(raw["logs"]),
            )
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line: skipped, the rest still reads
