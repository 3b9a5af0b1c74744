"""`Forwarding` (p2pfaas/node/forwarding.py): a FORWARD decision's targets are tried in order, each
given the lessee's request unchanged inside a `ForwardRequest` this node signs; a refusing peer is
noted as full, an unreachable one forgotten, a wrong answer passed over; a PROBE decision asks the
targets and lets the policy decide from their answers.

The router here is a plain object with the router's parts (a real view, once table, policy and
keys); the peers are coroutines that answer as peers do."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from p2pfaas import signing
from p2pfaas.errors import Busy, Unreachable
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Delegation, InvokeRequest, InvokeResult
from p2pfaas.node.forwarding import Forwarding
from p2pfaas.node.once import OnceTable
from p2pfaas.node.stats import RouterStats
from p2pfaas.placement.policy import Decision, Gossip, Kind, LocalState, Policy, ProbeAnswer, ThresholdProbe
from p2pfaas.placement.view import LoadView, PeerLoad
from p2pfaas.placement.wire import ForwardRequest

LESSEE, NODE, PEER = (KeyPair.from_seed(bytes([n]) * 32) for n in (1, 2, 3))
DIGEST = "ab" * 32


def _request(invocation_id: str) -> InvokeRequest:
    return signing.sign(InvokeRequest(invocation_id, DIGEST, b"{}", 5.0, None, b"", b""), LESSEE)


def _result(invocation_id: str) -> InvokeResult:
    unsigned = InvokeResult(invocation_id, DIGEST, True, b"1", "", "", "", 0.01, False, None, b"", b"")
    return signing.sign(unsigned, PEER)


def _load(node_id: str) -> PeerLoad:
    return PeerLoad(node_id, f"http://{node_id}.test", 1, 2, 2, 0, False, {}, {}, received_at=0.0)


@dataclass
class FakeRouter:
    answers: dict[str, BaseException | str]  # url -> what that peer does: raise it, or answer for that id
    keys: KeyPair = NODE
    view: LoadView = field(default_factory=lambda: LoadView(self_id="self", max_age_s=1e9))
    policy: Policy = field(default_factory=Gossip)
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    once: OnceTable = field(default_factory=OnceTable)
    stats: RouterStats = field(default_factory=RouterStats)
    sent: list[tuple[str, ForwardRequest]] = field(default_factory=list)
    probe = None

    def __post_init__(self) -> None:
        for url in self.answers:
            self.view.update(url.split("//")[1].split(".")[0], _load(url.split("//")[1].split(".")[0]))

    async def send_forward(self, url: str, forward: ForwardRequest) -> InvokeResult:
        self.sent.append((url, forward))
        answer = self.answers[url]
        if isinstance(answer, BaseException):
            raise answer
        return _result(answer)

    def chain_of(self, invocation_id: str) -> tuple[Delegation, ...]:
        return ()


async def test_targets_are_tried_in_order_until_one_takes_it_and_each_failure_is_noted() -> None:
    router = FakeRouter(
        {
            "http://full.test": Busy("no room"),
            "http://gone.test": Unreachable("connection refused"),
            "http://liar.test": "another-invocation",  # a signed answer for some other id
            "http://good.test": "inv-1",
        }
    )
    decision = Decision(Kind.FORWARD, ("full", "gone", "liar", "good"))
    result = await Forwarding(router).forward(_request("inv-1"), 0, decision)
    assert result is not None and result.invocation_id == "inv-1"
    assert [url for url, _ in router.sent] == [
        "http://full.test",
        "http://gone.test",
        "http://liar.test",
        "http://good.test",
    ]
    for _, forward in router.sent:  # the lessee's request, unchanged, one hop further, signed by us
        assert forward.request == _request("inv-1") and forward.hops == 1 and forward.must_accept
        assert signing.verify(forward).raw == NODE.public.raw
    assert router.view.get("gone") is None and router.view.get("full") is not None
    assert (router.stats.forwarded, router.stats.refused_forwards) == (1, 3)


async def test_when_every_target_fails_or_lies_the_answer_is_none() -> None:
    router = FakeRouter({"http://liar.test": "another-invocation"})
    assert await Forwarding(router).forward(_request("inv-2"), 1, Decision(Kind.FORWARD, ("liar",))) is None
    nobody = FakeRouter({"http://full.test": Busy("no room")})
    conditional = Decision(Kind.FORWARD, ("full", "unknown"), conditional=True)
    assert await Forwarding(nobody).forward(_request("inv-3"), 1, conditional) is None
    [(_, forward)] = nobody.sent  # a target with no URL in the view is skipped, not sent to
    assert forward.hops == 2 and not forward.must_accept


async def test_without_a_way_to_probe_the_invocation_stays_here() -> None:
    router = FakeRouter({"http://good.test": "inv-4"})
    local = LocalState(capacity=1, busy=1, queued=0, draining=False)
    decision = await Forwarding(router).probe(_request("inv-4"), local, Decision(Kind.PROBE, ("good",)))
    assert decision.kind is Kind.LOCAL


async def test_probe_answers_go_back_to_the_policy() -> None:
    router = FakeRouter({"http://good.test": "inv-5", "http://full.test": "inv-5"}, policy=ThresholdProbe())
    asked: list[str] = []

    async def probe(url: str) -> ProbeAnswer | None:
        asked.append(url)
        node_id = url.split("//")[1].split(".")[0]
        return ProbeAnswer(node_id=node_id, capacity=2, load=0 if node_id == "good" else 5, rtt_s=0.01)

    router.probe = probe  # type: ignore[assignment]
    local = LocalState(capacity=1, busy=1, queued=3, draining=False)
    decision = await Forwarding(router).probe(
        _request("inv-5"), local, Decision(Kind.PROBE, ("full", "good"), sequential=True)
    )
    assert decision == Decision(Kind.FORWARD, ("good",))
    assert asked == ["http://full.test", "http://good.test"] and router.stats.probes == 2  # in turn
