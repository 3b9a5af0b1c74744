"""Names of replicas: `<group>~r<k>`, so every replica of one invocation has its own invocation id.

Each replica must be its own invocation id, because the ledger settles an id at most once and a
router runs an id at most once per node; the shared `<group>` part (the client's 32 hex digits)
lets the anchor tell a replica's receipt apart from an ordinary one and wait for the vote before
paying it. Sans-I/O.
"""

from __future__ import annotations

import re

__all__ = ["MAX_REPLICA", "group_of", "is_replica", "replica_id"]

MAX_REPLICA = 99
_REPLICA = re.compile(r"([0-9a-f]{32})~r([1-9][0-9]?)")


def replica_id(group: str, k: int) -> str:
    """The invocation id of replica `k` (1-based) of `group` (32 lowercase hex digits)."""
    if not re.fullmatch(r"[0-9a-f]{32}", group) or not 1 <= k <= MAX_REPLICA:
        raise ValueError(f"bad replica: group {group[:40]!r}, k {k}")
    return f"{group}~r{k}"


def is_replica(invocation_id: str) -> bool:
    return _REPLICA.fullmatch(invocation_id) is not None


def group_of(invocation_id: str) -> str | None:
    """The group of a replica's id, or None for an ordinary invocation id."""
    match = _REPLICA.fullmatch(invocation_id)
    return None if match is None else match.group(1)
