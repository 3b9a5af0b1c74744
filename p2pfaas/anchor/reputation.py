"""The trust routes: lessees report replication votes and advert lies; anyone reads reputations.

    POST /v1/replication     ReplicationReport -> ReplicationVerdict   (signed by the receipts' lessee key)
    POST /v1/adverts/lies    AdvertLieReport   -> Ack                  (two things one node signed; no token)
    GET  /v1/reputation/{node_id}              -> NodeReputation
    GET  /v1/reputation?node=<id>&node=<id>... -> ReputationList       (at most 256 nodes a request)

The anchor decides each vote itself from the node-signed receipts' result hashes; the lessee's
report only delivers them. It checks that every receipt is signed by its node and names the
reporting lessee's key, that all are replicas of one group and one bundle, and that no node votes
twice. Then agreeing nodes gain reputation, dissenters lose their streak (BOINC's adaptive
replication), and the verdicts gate the ledger: outvoted replicas are never paid.

Every replica must have run the same request: each receipt carries the node-signed
`request_sha256` (bundle, payload and timeout; see `messages.request_sha256`), and a report whose
receipts name different requests, or a receipt without one, is refused with nothing recorded. So a
lessee who sends different inputs to replicas cannot make an honest node look like a dissenter:
there is no verdict, and the gate pays the held replicas after its hold as unreplicated work (the
lessee bears the cost, not the nodes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from p2pfaas import codec, signing
from p2pfaas.anchor.ledger_api import LEDGER
from p2pfaas.anchor.trust_store import Replica, TrustStore
from p2pfaas.clock import wall_time
from p2pfaas.db import Database
from p2pfaas.db.schema import bundles
from p2pfaas.dht.records import check_record
from p2pfaas.dht.wire import Record
from p2pfaas.errors import NotFound, Refused
from p2pfaas.identity import PublicKey
from p2pfaas.messages import Ack
from p2pfaas.rpc import Forbidden, read_message, reply
from p2pfaas.trust.adaptive import AdaptivePolicy
from p2pfaas.trust.adaptive import Record as TrackRecord
from p2pfaas.trust.adverts import AdvertPrices, Usage, max_price_micro
from p2pfaas.trust.replica_ids import group_of
from p2pfaas.trust.vote import Agreed, Ballot, DuplicateVoter, Inconclusive, Vote
from p2pfaas.trust.wire import (
    MAX_REPORTED_REPLICAS,
    AdvertLieReport,
    NodeReputation,
    ReplicationReport,
    ReplicationVerdict,
    ReputationList,
)

__all__ = ["TrustApi", "add_routes"]

MAX_NODES_PER_QUERY = 256
CLOCK_SKEW_S = 300.0
_HEX40 = frozenset("0123456789abcdef")


@dataclass
class TrustApi:
    store: TrustStore
    policy: AdaptivePolicy

    async def report(self, request: web.Request) -> web.Response:
        report = await read_message(request, ReplicationReport)
        lessee = signing.verify(report)
        if not 2 <= report.quorum <= MAX_REPORTED_REPLICAS:
            raise Refused(f"quorum must be within 2..{MAX_REPORTED_REPLICAS}", status=400)
        if len(report.receipts) < 2:
            raise Refused("a vote needs the receipts of at least two replicas", status=400)
        digests = {r.digest for r in report.receipts}
        if len(digests) != 1:
            raise Refused("the receipts are for different bundles", status=400)
        vote = Vote(quorum=report.quorum, max_replicas=MAX_REPORTED_REPLICAS)
        replicas: list[Replica] = []
        for receipt in report.receipts:
            node = signing.verify(receipt)
            if receipt.lessee_key != lessee.raw:
                raise Forbidden(f"receipt {receipt.invocation_id[:64]!r} names another lessee's key")
            if group_of(receipt.invocation_id) != report.group:
                raise Refused(
                    f"{receipt.invocation_id[:64]!r} is not a replica of group {report.group!r}", status=400
                )
            try:
                vote.cast(Ballot(node.key_id, _outcome_hash(receipt.ok, receipt.result_sha256)))
            except DuplicateVoter as error:
                raise Refused(str(error), status=400) from None
            replicas.append(Replica(receipt.invocation_id, node.key_id))
        if len({r.invocation_id for r in replicas}) != len(replicas):
            raise Refused("a replica's receipt appears twice", status=400)
        # Checked once the receipts are known to be the nodes' own: a node signed what it ran.
        requests = {r.request_sha256 for r in report.receipts}
        if b"" in requests:
            raise Refused(
                "a receipt names no request hash (its node predates them): the vote could not show "
                "that every replica ran the same input",
                status=400,
            )
        if len(requests) != 1:
            raise Refused(
                "the replicas were sent different requests (payload or timeout): there is nothing to "
                "vote on, and the nodes are paid as for unreplicated work",
                status=400,
            )
        decided = vote.decide()
        decision = decided if isinstance(decided, Agreed) else Inconclusive(len(replicas), 0)
        first = await self.store.record_vote(
            group=report.group,
            lessee_key_id=lessee.key_id,
            digest=digests.pop(),
            decision=decision,
            replicas=replicas,
            now=wall_time(),
        )
        if first:
            return reply(_verdict_of(report.group, decision, first_report=True))
        stored = await self.store.verdicts(report.group)
        agreeing = tuple(sorted(v.node_id for v in stored.values() if v.verdict == "agreed"))
        dissenting = tuple(sorted(v.node_id for v in stored.values() if v.verdict == "dissent"))
        outcome = "agreed" if agreeing else "inconclusive"
        return reply(ReplicationVerdict(report.group, outcome, b"", agreeing, dissenting, first_report=False))

    async def report_lie(self, request: web.Request) -> web.Response:
        msg = await read_message(request, AdvertLieReport)
        advert = codec.decode_as(Record, msg.advert)
        check_record(advert)
        receipt = msg.receipt
        signing.verify(receipt)
        if advert.signer != receipt.signer:
            raise Refused("the advert and the receipt are signed by different nodes", status=400)
        if advert.capacity is None:
            raise Refused("the record is not a capacity advert", status=400)
        # The advert must have stood when the node signed the receipt: published before (its sequence
        # number is its publication time in ms) and not yet expired.
        if not advert.seq / 1000.0 <= receipt.issued_at <= advert.expires_at:
            raise Refused("the advert was not in force when the receipt was signed", status=400)
        if receipt.issued_at > wall_time() + CLOCK_SKEW_S:
            raise Refused("the receipt is dated in the future", status=400)
        reserved = await _memory_mb(self.store.db, receipt.digest)
        usage = Usage(receipt.cpu_ms, receipt.wall_ms, receipt.peak_memory_mb, reserved)
        prices = AdvertPrices(advert.capacity.price_per_cpu_s, advert.capacity.price_per_gb_s)
        bound = max_price_micro(prices, usage)
        if receipt.price_micro <= bound:
            raise Refused(
                f"no lie: {receipt.price_micro} is within the advert's {bound} micro-credits", status=400
            )
        node_id = PublicKey(receipt.signer).key_id
        new = await self.store.record_lie(
            node_id=node_id,
            invocation_id=receipt.invocation_id,
            price_micro=receipt.price_micro,
            max_price_micro=bound,
            now=wall_time(),
        )
        if not new:
            return reply(Ack(f"lie by {node_id} was recorded before"))
        # A proven overcharge costs the node the payment too, not only its streak.
        ledger = request.app[LEDGER]
        taken = await ledger.claw_back(
            receipt.invocation_id,
            node_id,
            excess_micro=receipt.price_micro - bound,  # what it charged beyond its own advert
            why=f"advert lie by node {node_id}",
        )
        return reply(Ack(f"lie by {node_id} recorded; {taken} micro-credits clawed back"))

    async def one(self, request: web.Request) -> web.Response:
        node_id = request.match_info["node_id"]
        if len(node_id) != 40 or not set(node_id) <= _HEX40:
            raise Refused("a node id is 40 lowercase hex digits", status=400)
        records = await self.store.records([node_id])
        return reply(self._reputation(node_id, records[node_id]))

    async def many(self, request: web.Request) -> web.Response:
        node_ids = request.query.getall("node", [])
        if len(node_ids) > MAX_NODES_PER_QUERY:
            raise Refused(f"ask for at most {MAX_NODES_PER_QUERY} nodes at a time", status=400)
        if any(len(n) != 40 or not set(n) <= _HEX40 for n in node_ids):
            raise Refused("a node id is 40 lowercase hex digits", status=400)
        records = await self.store.records(node_ids)
        return reply(ReputationList(tuple(self._reputation(n, r) for n, r in sorted(records.items()))))

    def _reputation(self, node_id: str, record: TrackRecord) -> NodeReputation:
        return NodeReputation(
            node_id=node_id,
            agreements=record.agreements,
            disagreements=record.disagreements,
            consecutive_valid=record.consecutive_valid,
            lies=record.lies,
            trust_probability=self.policy.trust_probability(record),
        )


def _outcome_hash(ok: bool, result_sha256: bytes) -> bytes:
    """What replicas must agree on: the result's hash, and whether it was a result or an error."""
    return result_sha256 if ok else hashlib.sha256(b"error:" + result_sha256).digest()


def _verdict_of(group: str, decision: Agreed | Inconclusive, *, first_report: bool) -> ReplicationVerdict:
    if isinstance(decision, Agreed):
        return ReplicationVerdict(
            group,
            "agreed",
            decision.result_sha256,
            tuple(sorted(decision.agreeing)),
            tuple(sorted(decision.dissenting)),
            first_report,
        )
    return ReplicationVerdict(group, "inconclusive", b"", (), (), first_report)


async def _memory_mb(db: Database, digest: str) -> int:
    async def work(connection: AsyncConnection) -> int | None:
        return await connection.scalar(sa.select(bundles.c.memory_mb).where(bundles.c.digest == digest))

    memory = await db.run(work, what="read the bundle's memory", write=False)
    if memory is None:
        raise NotFound(f"no bundle {digest[:12]} here: cannot tell what the node may charge")
    return int(memory)


def add_routes(app: web.Application, db: Database, *, policy: AdaptivePolicy | None = None) -> TrustApi:
    policy = policy or AdaptivePolicy()
    api = TrustApi(TrustStore(db, policy=policy), policy)
    app.add_routes(
        [
            web.post("/v1/replication", api.report),
            web.post("/v1/adverts/lies", api.report_lie),
            web.get("/v1/reputation", api.many),
            web.get("/v1/reputation/{node_id}", api.one),
        ]
    )
    return api
