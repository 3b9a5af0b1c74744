"""The kit of the node's payment tests."""

from __future__ import annotations

import hashlib

from p2pfaas.identity import KeyPair


def keys(seed: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(seed.encode()).digest())
