"""The kit of the client tests: a log entry as the client's log book keeps it."""

from __future__ import annotations

from p2pfaas.client.logbook import LogEntry


def entry(n: int, function: str = "resize", logs: str = "line\n") -> LogEntry:
    return LogEntry(1_800_000_000.0 + n, function, f"inv-{n}", "ab" * 20, n % 2 == 0, logs)
