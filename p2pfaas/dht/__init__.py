"""The overlay: Kademlia (the `kademlia` package, subclassed), signed capacity adverts, Vivaldi.

Not built yet: this is issue #3. Until it lands, clients find nodes through the anchor's node
list (`GET /v1/nodes`), which later becomes the fallback path.
"""
