"""The double-entry ledger in integer micro-credits (issue #5), on MariaDB and on SQLite.

- `policy`: the sans-I/O rules: fees, which accounts may go negative, payout states, and which
  receipts of a batch to pay (`admit_batch`).
- `postings`: accounts and transfers (entries summing to zero), the amount bounds, the errors;
  `earnings`: what a settlement credited, maturing, and claw-back of a proven lie.
- `store`: `LedgerStore`, one transaction per operation: accounts, grants, corrections, vouchers'
  escrow holds and their release at expiry, payouts; `settlement`: receipt batches, exactly once,
  within the payment channels whose rows `channels` keeps (what each lessee signed for each node).
- `issuer`: the anchor's voucher-signing key (kept in the database) and voucher issuance.
- `payments`: the payment-provider interface and the manual-payments provider.
- `audit`: the invariants, checked against the database; `wire`: the HTTP messages (tags 80-99).

Everything goes through `p2pfaas.db` (SQLAlchemy Core over aiomysql/aiosqlite, Alembic revisions),
one retried transaction per operation, each idempotent by a reference. The HTTP routes are in
`p2pfaas.anchor.ledger_api`; the node's side in `p2pfaas.node.payments`; the lessee's in
`p2pfaas.client.wallet`; the spend ticket and the channel ticket at the floor, in `p2pfaas.tickets`
and `p2pfaas.channels` (see docs/payment-channels.md).
"""
