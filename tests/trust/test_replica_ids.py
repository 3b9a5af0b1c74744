"""Replica ids: a replica's id names its invocation group, and only ids of that shape are replicas."""

from __future__ import annotations

import pytest

from p2pfaas.trust.replica_ids import group_of, is_replica, replica_id


def test_replica_ids_name_their_group() -> None:
    group = "0123456789abcdef" * 2
    rid = replica_id(group, 3)
    assert rid == f"{group}~r3" and len(rid) <= 64
    assert is_replica(rid) and group_of(rid) == group
    assert not is_replica(group) and group_of(group) is None
    for bad in ("x" * 32, group + "0"):
        with pytest.raises(ValueError):
            replica_id(bad, 1)
    with pytest.raises(ValueError):
        replica_id(group, 0)
