"""Ports for servers that tests start in other processes.

A port probed free with `bind(("127.0.0.1", 0))` comes from the kernel's ephemeral range, and
the same kernel hands ports of that range to every outgoing connection on the machine. Between
the probe and the child's bind, a connection from another test (or from the child's own
siblings) can take it: a flaky "address already in use". Ports below the ephemeral range are
never handed out that way, so these helpers probe there, at a random base so that concurrent
runs seldom try the same block.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOW = 20_000  # above the well-known and most registered service ports


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port_block(size: int) -> int:
    """A base port with `size` consecutive ports free after it, all outside the ephemeral range."""
    high = _ephemeral_floor() - size
    if high <= _LOW:
        raise RuntimeError(f"the ephemeral range starts at {high + size}: no room below it")
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(_LOW, high)
        held: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no block of {size} free ports below the ephemeral range")


def free_port() -> int:
    """One free port outside the ephemeral range."""
    return free_port_block(1)
