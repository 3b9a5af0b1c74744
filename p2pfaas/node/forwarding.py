"""Forwarding: how a node asks peers about an invocation and hands it to one (issue #6).

`Forwarding.probe` asks the targets of a PROBE decision for their exact load now (in turn or at once,
as the policy says) and lets the policy decide again from the answers. `Forwarding.forward` tries a
FORWARD decision's targets in order: each gets the lessee's signed request unchanged inside a
`ForwardRequest` signed by this node, with the hop count and, for a paid call, a delegation to the
target added to the chain (the next node is paid for it, not us). A refusal (Busy/Refused) notes the
peer as full, an unreachable peer is forgotten, a malformed answer is logged; each is tried elsewhere.

It reads the router's settings each time (its view, policy, transport), so they may be swapped at
run time (tests and benchmarks do), and counts into the router's stats.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from p2pfaas import signing, tickets
from p2pfaas.errors import P2PFaaSError, Refused, RemoteError, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Delegation, InvokeRequest, InvokeResult
from p2pfaas.node.once import OnceTable, same_invocation
from p2pfaas.node.stats import RouterStats
from p2pfaas.placement.policy import Decision, Kind, LocalState, Policy, ProbeAnswer
from p2pfaas.placement.view import LoadView
from p2pfaas.placement.wire import ForwardRequest

log = logging.getLogger(__name__)


class Placer(Protocol):
    """The router, as forwarding sees it."""

    keys: KeyPair
    view: LoadView
    policy: Policy
    rng: random.Random
    once: OnceTable
    stats: RouterStats

    @property
    def probe(self) -> Callable[[str], Awaitable[ProbeAnswer | None]] | None: ...

    @property
    def send_forward(self) -> Callable[[str, ForwardRequest], Awaitable[InvokeResult]]: ...

    def chain_of(self, invocation_id: str) -> tuple[Delegation, ...]: ...


@dataclass
class Forwarding:
    """The router's conversations with peers about one invocation."""

    router: Placer

    async def probe(self, request: InvokeRequest, local: LocalState, decision: Decision) -> Decision:
        if self.router.probe is None:
            return Decision(Kind.LOCAL)
        answers: list[ProbeAnswer] = []
        urls = [self.url(t) for t in decision.targets]
        if decision.sequential:
            for url in urls:
                self.router.stats.probes += 1
                answer = await self.router.probe(url) if url else None
                if answer is not None:
                    answers.append(answer)
                    if self.router.policy.acceptable(answer):
                        return Decision(Kind.FORWARD, (answer.node_id,))
        else:
            self.router.stats.probes += len(urls)
            got = await asyncio.gather(*(self.router.probe(u) for u in urls if u))
            answers = [a for a in got if a is not None]
        return self.router.policy.after_probe(local, answers, self.router.rng)

    def url(self, node_id: str) -> str:
        load = self.router.view.get(node_id)
        return load.url if load is not None else ""

    async def forward(self, request: InvokeRequest, hops: int, decision: Decision) -> InvokeResult | None:
        """Try the decision's targets in order; None when every one refused or failed."""
        for target in decision.targets:
            url = self.url(target)
            if not url:
                continue
            chain = self.router.chain_of(request.invocation_id)
            if request.voucher is not None:  # the next node is paid for it, not us
                chain += (tickets.delegate(request.invocation_id, target, self.router.keys),)
            forward = signing.sign(
                ForwardRequest(
                    request=request,
                    hops=hops + 1,
                    must_accept=not decision.conditional,
                    signer=b"",
                    signature=b"",
                    chain=chain,
                ),
                self.router.keys,
            )
            self.router.view.note_sent(target)
            try:
                with self.router.once.forwarding(request.invocation_id):
                    result = same_invocation(request, await self.router.send_forward(url, forward))
            except Refused as exc:
                self.router.stats.refused_forwards += 1
                self.router.view.note_refused(target)
                log.debug("forward of %s to %s refused: %s", request.invocation_id, url, exc)
                continue
            except Unreachable as exc:
                self.router.stats.refused_forwards += 1
                self.router.view.forget(target)
                log.info("forward of %s to %s failed: %s", request.invocation_id, url, exc)
                continue
            except (RemoteError, P2PFaaSError) as exc:  # a malformed answer, another call's: try elsewhere
                self.router.stats.refused_forwards += 1
                log.warning("forward of %s to %s went wrong: %s", request.invocation_id, url, exc)
                continue
            self.router.stats.forwarded += 1
            return result
        return None
