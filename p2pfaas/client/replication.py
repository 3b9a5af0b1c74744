"""Replicated invocation of deterministic functions: same input on distinct nodes, results compared.

`ReplicatedInvoker(client).invoke(name, payload)` runs a function marked `deterministic`:

1. Adaptive (BOINC's adaptive replication, `p2pfaas.trust.adaptive`): the first node picked is
   trusted alone with probability 1 - 1/CV when its record at the anchor holds CV >= 10
   consecutive agreements; otherwise (and always with `adaptive=False`) the invocation is replicated.
2. Replicated: `quorum` replicas go out at once to distinct nodes, each under its own invocation
   id `<group>~r<k>`; each answer is checked (signed by the node it was sent to, for this replica)
   and becomes a ballot: the hash of the output (or of the error). `p2pfaas.trust.vote.Vote` says
   whether a result won (a quorum, and more votes than any other), or how many more could decide it;
   those go to nodes not used yet, up to `max_replicas`. No majority by then: `ReplicationInconclusive`.
3. The node-signed receipts of the answers go to the anchor (`POST /v1/replication`), which decides
   the vote again itself, pays only the majority's replicas and moves the nodes' reputations.
   The lessee signs for the majority's results only (`AsyncClient.paid_for`, after the vote), so a
   channel round (`p2pfaas.ledger.rounds`) never pays an outvoted replica either. With no majority
   nobody was proven wrong: it signs for every answer it received, and reports the vote.

The returned value is the output of a node whose output hashes to the winning result. A node that
does not answer, answers for another invocation, or signs with another key is skipped and costs a
replica from the cap; one that could not be sent anything (`NotSent`: no connection, no tunnel, a
peer that failed the identity pin) is skipped at no cost, since nothing could have run. Nothing here
runs on the anchor's path except the (cached) reputation lookup and the report after the vote.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from p2pfaas import rpc, signing, tickets
from p2pfaas.client.async_client import NETWORK_SLACK_S, AsyncClient
from p2pfaas.client.outcome import InvokeOutcome, decode_outcome
from p2pfaas.errors import InvokeError, LocalError, NotSent, P2PFaaSError, SignatureError
from p2pfaas.messages import InvokeRequest, InvokeResult, NodeInfo, Voucher, request_sha256
from p2pfaas.trust.adaptive import AdaptivePolicy, Record
from p2pfaas.trust.replica_ids import replica_id
from p2pfaas.trust.vote import (
    DEFAULT_MAX_REPLICAS,
    DEFAULT_QUORUM,
    Agreed,
    Ballot,
    DuplicateVoter,
    NeedMore,
    Vote,
)
from p2pfaas.trust.wire import ReplicationReport, ReplicationVerdict, ReputationList

__all__ = ["ReplicatedInvoker", "ReplicatedOutcome", "ReplicationInconclusive", "verified_invoke"]

log = logging.getLogger(__name__)
REPUTATION_TTL_S = 60.0
REPUTATION_BATCH = 128  # records asked for at once (the anchor answers up to 256)


class _Skip(enum.Enum):
    NOT_SENT = "not sent"


NOT_SENT = _Skip.NOT_SENT  # a replica that reached no node: it costs nothing from the cap


class ReplicationInconclusive(InvokeError):
    """No result won a quorum and a majority within the replica cap (or the network ran out of nodes)."""


@dataclass(frozen=True)
class ReplicatedOutcome:
    """The agreed result, who agreed and who did not, and what the anchor made of it."""

    outcome: InvokeOutcome
    result_sha256: bytes
    replicas: int  # invocations sent, answered or not
    agreeing: frozenset[str]
    dissenting: frozenset[str]
    spot_checked: bool  # False: the node was trusted alone (adaptive replication), no vote held
    verdict: ReplicationVerdict | None  # the anchor's, when the vote could be reported


@dataclass
class _Answer:
    node: NodeInfo
    request: InvokeRequest
    result: InvokeResult
    ballot: Ballot


@dataclass
class ReplicatedInvoker:
    """Replicated invocations through `client` (which must be open). Keeps a short reputation cache."""

    client: AsyncClient
    quorum: int = DEFAULT_QUORUM
    max_replicas: int = DEFAULT_MAX_REPLICAS
    adaptive: bool = True
    policy: AdaptivePolicy = field(default_factory=AdaptivePolicy)
    voucher: Voucher | None = None  # None: the client's wallet's, if it has one
    report: bool = True
    _records: dict[str, Record] = field(default_factory=dict)
    _records_at: float = float("-inf")

    def __post_init__(self) -> None:
        Vote(quorum=self.quorum, max_replicas=self.max_replicas)  # checks the numbers
        if self.quorum < 2:
            raise LocalError("replication needs a quorum of at least 2")

    async def invoke(
        self, name: str, payload: Any = None, *, timeout_s: float | None = None
    ) -> ReplicatedOutcome:
        info = await self.client.function(name)
        manifest = info.header.manifest
        if not manifest.deterministic:
            raise LocalError(f"{name} is not marked deterministic: its replicas could differ honestly")
        timeout = min(timeout_s or manifest.timeout_s, manifest.timeout_s)
        try:
            body = json.dumps(payload, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise LocalError(f"payload is not JSON-serialisable: {exc}") from None
        group = f"{self.client.rng.getrandbits(128):032x}"
        nodes = [n for n in await self.client.nodes() if manifest.runtime in n.runtimes or not n.runtimes]
        # The order derives from the group id (drawn from the client's rng), as AsyncClient's does.
        random.Random(group).shuffle(nodes)
        if self.adaptive and nodes:
            first = nodes[0]
            # Everyone's record in one request (cached), not one request per node met.
            known_records = await self._reputations([n.node_id for n in nodes[:REPUTATION_BATCH]])
            record = known_records.get(first.node_id, Record())
            if not self.policy.should_replicate(record, self.client.rng):
                # Trusted alone, under an ordinary invocation id: paid at once, no vote.
                alone = await self._one(
                    first, group, info.header.digest, body, timeout, _by_key(nodes), manifest.memory_mb
                )
                if isinstance(alone, _Answer):
                    self.client.paid_for(alone.request, alone.result, alone.node)
                    outcome = decode_outcome(alone.request, alone.result, alone.node)
                    only = frozenset({alone.node.node_id})
                    return ReplicatedOutcome(
                        outcome, _output_hash(alone.result), 1, only, frozenset(), False, None
                    )
                nodes = nodes[1:]  # it failed: replicate on the others
        return await self._replicate(group, info.header.digest, body, timeout, nodes, manifest.memory_mb)

    async def _replicate(
        self,
        group: str,
        digest: str,
        body: bytes,
        function_timeout_s: float,
        nodes: list[NodeInfo],
        memory_mb: int,
    ) -> ReplicatedOutcome:
        vote = Vote(quorum=self.quorum, max_replicas=self.max_replicas)
        known = _by_key(nodes)
        fresh = list(nodes)
        answers: dict[str, _Answer] = {}
        sent = 0
        while True:
            decision = vote.decide()
            if isinstance(decision, Agreed):
                break
            if not isinstance(decision, NeedMore):
                await self._inconclusive(group, answers)
                raise ReplicationInconclusive(
                    f"no result won among {len(answers)} answers from {sent} replicas"
                    f" (cap {self.max_replicas})",
                    invocation_id=group,
                )
            if len(fresh) < decision.count:
                await self._inconclusive(group, answers)
                raise ReplicationInconclusive(
                    f"only {len(fresh)} more distinct nodes for the {decision.count} replicas still needed",
                    invocation_id=group,
                )
            batch = [(fresh.pop(0), sent + k + 1) for k in range(decision.count)]
            sent += len(batch)
            results = await asyncio.gather(
                *(
                    self._one(node, replica_id(group, k), digest, body, function_timeout_s, known, memory_mb)
                    for node, k in batch
                )
            )
            for answer in results:
                if answer is NOT_SENT:
                    continue  # nothing ran: the replica goes to the next fresh node
                if not isinstance(answer, _Answer):
                    vote.no_answer()
                    continue
                try:
                    vote.cast(answer.ballot)
                except DuplicateVoter:
                    vote.no_answer()
                    continue
                answers[answer.ballot.node_id] = answer
                fresh = [n for n in fresh if n.node_id != answer.ballot.node_id]  # it has voted
        # What the anchor is about to do with this vote, done to the cached records at once, so this
        # client's own votes count before its next refresh of everyone's records.
        for node_id in decision.agreeing | decision.dissenting:
            before = self._records.get(node_id, Record())
            self._records[node_id] = self.policy.after_vote(before, agreed=node_id in decision.agreeing)
        winners = [a for a in answers.values() if a.ballot.node_id in decision.agreeing]
        for winner in winners:  # the lessee signs for the results that won the vote, and no other
            self.client.paid_for(winner.request, winner.result, winner.node)
        chosen = winners[0]  # each answer's output matches its receipt's hash (checked in `_one`)
        outcome = decode_outcome(chosen.request, chosen.result, chosen.node)  # raises the agreed error
        verdict = await self._report(group, list(answers.values())) if self.report else None
        return ReplicatedOutcome(
            outcome, decision.result_sha256, sent, decision.agreeing, decision.dissenting, True, verdict
        )

    async def _inconclusive(self, group: str, answers: dict[str, _Answer]) -> None:
        """No majority: nobody was proven wrong, and the lessee received every answer, so it signs
        for each of them (the anchor pays an inconclusive vote's replicas, `trust.gate`) and reports
        the vote, so that their receipts are paid at once rather than after the anchor's hold."""
        for answer in answers.values():
            self.client.paid_for(answer.request, answer.result, answer.node)
        if self.report and answers:
            await self._report(group, list(answers.values()))

    async def _one(
        self,
        node: NodeInfo,
        invocation_id: str,
        digest: str,
        body: bytes,
        function_timeout_s: float,
        known: dict[bytes, NodeInfo],
        memory_mb: int = 128,  # the function's: what its price cap is worked out from
    ) -> _Answer | _Skip | None:
        """The node's usable answer; NOT_SENT when nothing reached it; None when it gave no usable one."""
        voucher = self.voucher
        wallet = self.client.wallet
        if voucher is None and wallet is not None:  # each replica is paid like any invocation
            voucher = await wallet.voucher(lifetime_s=function_timeout_s + NETWORK_SLACK_S)
        cap = wallet.cap_micro(timeout_s=function_timeout_s, memory_mb=memory_mb) if wallet else 0
        request = tickets.signed_request(  # each replica's own ticket: its own invocation id and node
            InvokeRequest(
                invocation_id=invocation_id,
                digest=digest,
                payload=body,
                timeout_s=function_timeout_s,
                voucher=voucher,
                signer=b"",
                signature=b"",
            ),
            self.client.keys,
            payee=node.node_id,
            max_price_micro=cap,
        )
        try:
            result = await rpc.call(
                self.client.session,
                "POST",
                f"{node.url}/v1/invoke",
                InvokeResult,
                request,
                timeout_s=function_timeout_s + NETWORK_SLACK_S,
            )
            if result.signer != node.public_key:
                # Forwarded by the entry node's router: the node that ran it signs, and must be one
                # the anchor lists; its vote is its own (a node that ran two replicas votes once).
                executor = known.get(result.signer)
                if executor is None:
                    raise SignatureError("answered with the signature of a node the anchor does not list")
                node = executor
            signing.verify(result)
            if result.invocation_id != invocation_id or result.digest != digest:
                raise SignatureError("answered another invocation")
            receipt = result.receipt
            if receipt is not None and (
                receipt.signer != node.public_key or receipt.invocation_id != invocation_id
            ):
                raise SignatureError("attached a receipt for another node or invocation")
            if receipt is not None:
                signing.verify(receipt)
                if receipt.ok != result.ok or (result.ok and receipt.result_sha256 != _output_hash(result)):
                    # The anchor counts the receipt's hash, the lessee gets the output: they must be one.
                    raise SignatureError("its receipt vouches for another result than the one it returned")
                if receipt.request_sha256 != request_sha256(request):
                    # The anchor votes only on replicas that name one request: this one would spoil it.
                    raise SignatureError("its receipt names another request than the one sent")
        except NotSent as error:
            log.info("replica %s: nothing reached node %s: %s", invocation_id, node.node_id[:12], error)
            return NOT_SENT
        except (P2PFaaSError, OSError) as error:
            log.info(
                "replica %s on node %s gave no usable answer: %s", invocation_id, node.node_id[:12], error
            )
            return None
        return _Answer(node, request, result, Ballot(node.node_id, _ballot_hash(result)))

    async def _reputations(self, node_ids: list[str]) -> dict[str, Record]:
        loop = asyncio.get_running_loop()
        missing = [n for n in node_ids if n not in self._records]
        if missing or loop.time() - self._records_at > REPUTATION_TTL_S:
            try:
                query = "&".join(f"node={n}" for n in node_ids)
                listing = await rpc.call(
                    self.client.session,
                    "GET",
                    f"{self.client.anchor_url}/v1/reputation?{query}",
                    ReputationList,
                    timeout_s=self.client.request_timeout_s,
                )
            except P2PFaaSError as error:
                log.info("no reputations from the anchor (%s): every invocation is replicated", error)
                return {}
            self._records.update(
                {
                    r.node_id: Record(r.agreements, r.disagreements, r.consecutive_valid, r.lies)
                    for r in listing.nodes
                }
            )
            self._records_at = loop.time()
        return {n: self._records[n] for n in node_ids if n in self._records}

    async def _report(self, group: str, answers: list[_Answer]) -> ReplicationVerdict | None:
        receipts = tuple(a.result.receipt for a in answers if a.result.receipt is not None)
        if len(receipts) < 2 or len(receipts) != len(answers):
            return None  # nodes that attach no receipts are not paid through vouchers either
        report = signing.sign(
            ReplicationReport(group, self.quorum, receipts, signer=b"", signature=b""), self.client.keys
        )
        try:
            return await rpc.call(
                self.client.session,
                "POST",
                f"{self.client.anchor_url}/v1/replication",
                ReplicationVerdict,
                report,
                timeout_s=self.client.request_timeout_s,
            )
        except P2PFaaSError as error:
            # The vote stands for this client; unreported, the replicas are paid after the anchor's hold.
            log.warning("could not report the vote of %s to the anchor: %s", group, error)
            return None


async def verified_invoke(
    client: AsyncClient, name: str, payload: Any, *, timeout_s: float | None, mode: str
) -> InvokeOutcome:
    """`p2pfaas fn invoke --verify adaptive|always`: the agreed outcome; how it was checked on stderr."""
    done = await ReplicatedInvoker(client, adaptive=mode == "adaptive").invoke(
        name, payload, timeout_s=timeout_s
    )
    if not done.spot_checked:
        how = f"trusted alone (node {done.outcome.node_id[:12]} has a long record of agreement)"
    else:
        how = f"{len(done.agreeing)} of {done.replicas} replicas agreed"
        if done.dissenting:
            how += f"; outvoted: {', '.join(n[:12] for n in sorted(done.dissenting))}"
    print(f"# verified: {how}", file=sys.stderr)
    return done.outcome


def _by_key(nodes: list[NodeInfo]) -> dict[bytes, NodeInfo]:
    return {n.public_key: n for n in nodes}


def _output_hash(result: InvokeResult) -> bytes:
    return hashlib.sha256(result.output).digest()


def _ballot_hash(result: InvokeResult) -> bytes:
    """What replicas must agree on, as the anchor reckons it from the receipt (see anchor/reputation.py)."""
    if result.receipt is not None:
        agreed_on = result.receipt.result_sha256
        return agreed_on if result.receipt.ok else hashlib.sha256(b"error:" + agreed_on).digest()
    if result.ok:
        return _output_hash(result)
    error = f"{result.error_type}\x00{result.error_message}".encode()
    return hashlib.sha256(b"error:" + hashlib.sha256(error).digest()).digest()
