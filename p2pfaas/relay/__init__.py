"""Relays: how a node behind NAT serves invocations it cannot receive directly.

The node dials out to a public relay (a public node or the anchor) and keeps one WebSocket open
(`link.RelayLink`); it proves its identity by signing the relay's challenge. The relay (`hub.RelayHub`)
then answers for it at `RELAY/v1/relay/<node id>/...`: each HTTP request there is framed onto the
WebSocket, the node runs it against its own HTTP service on loopback and frames the answer back.
Callers need nothing new: the relayed URL is a base URL like any other (`/v1/invoke` appended).

`wire` declares the frames (codec tags 130-139). A relay sees what it carries (as a reverse proxy
does) and can drop or delay it, but cannot answer as the node: answers are signed by the node where
it matters (receipts, results' hashes), and a relay that fails is replaced by the node.
"""

from p2pfaas.relay.hub import RelayHub, is_relayed, relay_path
from p2pfaas.relay.link import RelayLink

__all__ = ["RelayHub", "RelayLink", "is_relayed", "relay_path"]
