"""Paid invocations on a node: vouchers checked offline, and never more work accepted than they cover.

`VoucherBook` is the sans-I/O core. Before an invocation runs, `authorize` checks the voucher the
request carries: signed by the anchor's key, issued to the key that signed the request, not expired
(with room for the invocation to finish), with the lessee's spend ticket for this very request
(`p2pfaas.tickets`: the anchor pays no receipt without it), and with enough budget left *on
this node* for the most the invocation could cost (its timeout at the node's prices, plus the
anchor's fee). That maximum is reserved; when the receipt is signed, `charged` replaces the
reservation with the real charge. So the sum of what this node bills a voucher never exceeds its
budget. (Other nodes bill it too; the anchor pays in arrival order and refuses what is over, so a
node that accepts a voucher another node has drained loses that work: the price of checking
offline.)

The spend ticket must also name this node as its payee, or come with the delegations of the
nodes that forwarded it here (`p2pfaas.tickets.chain_problem`): the anchor pays no receipt
of a node the call was not sent to. A ticket whose price cap is below what the invocation may cost
at this node's prices is refused (402), so the node never runs work the anchor would not pay for;
the receipt's price is never over the cap.

Requests without a voucher are refused (402) unless the volunteer opts in with an `UnpaidPolicy`:
a function's owner running its own functions (a devnet), or an allow-list of lessee keys (the
volunteer's own). The node's adverts say which (`UnpaidPolicy.describe`).

`NodePayments` is the daemon's adapter: it learns the anchor key over HTTP, prices the worst case
with the node's `Prices`, passes receipts to a `ReceiptSender`, and keeps what it charged each
voucher in a `SpendLog` so that a restarted node does not accept a spent budget again.

What a voucher has committed on this node (charged, and reserved by each worker process) lives in a
`SpendStore`: `LocalSpends` (a dict) for a one-process node, or `p2pfaas.node.shared.spends.SharedSpends`
when several worker processes serve one node and must share each budget. A reservation itself
(invocation id -> most it may cost) stays in the process that made it: the node's exactly-once table
hands an id to one process only. The store keeps each worker's reserved sum apart, so that when a
worker process dies its reservations can be dropped with it (`SharedSpends.release_worker`).
Not here: metering (issue #4).

    spends.py         what a voucher committed here: `SpendStore`, `LocalSpends`, `PaymentRequired`
    book.py           `VoucherBook` (the sans-I/O check and reservation), `UnpaidPolicy`, `max_price_micro`
    spend_log.py      `SpendLog`: what was charged each voucher, on disk, for a restarted node
    node_payments.py  `NodePayments`: the daemon's asyncio adapter (anchor key, receipts, spend log)
    receipts.py       the receipt journal, queue and sender to the anchor
    channel_store.py  `ChannelStore`: the lessees' latest payment-channel tickets, shared by workers
"""
