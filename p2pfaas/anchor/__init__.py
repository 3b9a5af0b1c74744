"""The anchor server: lessee keys, the bundle registry and the node list (accounts and ledger: issue #5)."""
