"""Relays: how a node behind NAT serves invocations it cannot receive directly.

The node dials out to a public relay (a public node or the anchor) and keeps one WebSocket open
(`link.RelayLink`); it proves its identity by signing the relay's challenge. The relay (`hub.RelayHub`)
then carries tunnels for it: a caller opens `RELAY/v1/tunnel/<node id>` and runs TLS to the node inside
(`p2pfaas.tunnel`, the caller's side), pinned to the node's key, so the relay passes bytes it cannot
read or forge. Many tunnels share the node's socket as streams with a window each (`stream`).
Callers need nothing new: the relayed URL `RELAY/v1/relay/<node id>` is a base URL like any other, and
`rpc.call` turns it into a tunnel.

`wire` declares the frames (codec tags 130-134, 139, 140). A relay can drop or delay what it
carries, and a relay that fails is replaced by the node.
"""

from p2pfaas.relay.hub import RelayHub
from p2pfaas.relay.link import RelayLink
from p2pfaas.tunnel import is_relayed, relay_path

__all__ = ["RelayHub", "RelayLink", "is_relayed", "relay_path"]
