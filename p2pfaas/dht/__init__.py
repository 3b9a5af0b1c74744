"""The overlay: Kademlia (the `kademlia` package, subclassed), signed capacity adverts, Vivaldi.

Modules: `wire` (signed datagrams and records), `sealing` (signing and checking a datagram, encoding once),
`records` (keys, signing, checks), `store` (many records per key, expiry, quotas), `routing` (the fixed,
Sybil-bounded table), `protocol` (signed RPCs), `lookup` (disjoint-path lookups), `node` (the `Server`
subclass), `vivaldi`, `adverts` (ranking), `quota`, `adversary` (the hostile node of the simulations).
This package root holds only what the CLI needs without importing the rest.
"""

from __future__ import annotations

DEFAULT_ANCHOR_DHT_PORT = 8468  # UDP; where `p2pfaas anchor serve` runs its bootstrap node by default


def parse_peer(text: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); raises ValueError with the reason."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"peer {text!r} is not HOST:PORT")
    return host, int(port)
