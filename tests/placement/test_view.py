"""The gossip load view: newest report wins by sequence number, reports age out, own forwards count."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfaas.placement.view import LoadView, PeerLoad

A = "a" * 40


def _load(seq: int, *, free: int = 2, at: float = 0.0, capacity: int = 4, draining: bool = False) -> PeerLoad:
    return PeerLoad(
        node_id=A,
        url="http://a",
        seq=seq,
        capacity=capacity,
        free_slots=free,
        queue_length=0,
        draining=draining,
        warm={"f" * 64: 2},
        queued={},
        received_at=at,
    )


def test_an_older_or_replayed_report_never_overwrites_a_newer_one() -> None:
    view = LoadView(self_id="s" * 40)
    assert view.update(A, _load(5, free=1))
    assert not view.update(A, _load(4, free=4))
    assert not view.update(A, _load(5, free=4))
    got = view.get(A)
    assert got is not None and got.free_slots == 1
    assert view.update(A, _load(6, free=3))


def test_own_reports_are_ignored() -> None:
    view = LoadView(self_id=A)
    assert not view.update(A, _load(1))
    assert len(view) == 0


def test_reports_age_out_and_a_forgotten_peer_cannot_be_revived_by_an_old_report() -> None:
    view = LoadView(self_id="s" * 40, max_age_s=5.0)
    view.update(A, _load(1, at=0.0))
    assert [c.node_id for c in view.candidates(4.0)] == [A]
    assert view.candidates(5.5) == []
    view.expire(5.5)
    assert view.get(A) is None
    assert not view.update(A, _load(1, at=6.0))  # a replay after expiry
    assert view.update(A, _load(2, at=6.0))


def test_forwards_since_the_report_lower_the_estimate_and_a_refusal_zeroes_it() -> None:
    view = LoadView(self_id="s" * 40)
    view.update(A, _load(1, free=3))
    view.note_sent(A)
    (c,) = view.candidates(0.0, "f" * 64)
    assert c.est_free == 2 and c.warm == 2
    view.note_sent(A)
    view.note_sent(A)
    view.note_sent(A)
    (c,) = view.candidates(0.0)
    assert c.est_free == 0 and c.est_queue == 1 and c.warm == 0
    view.update(A, _load(2, free=3))
    view.note_refused(A)
    (c,) = view.candidates(0.0)
    assert c.est_free == 0


def test_draining_peers_are_not_candidates_and_claims_are_clamped() -> None:
    view = LoadView(self_id="s" * 40)
    view.update(A, _load(1, draining=True))
    assert view.candidates(0.0) == []
    view.update(A, _load(2, free=99, capacity=4))
    (c,) = view.candidates(0.0)
    assert c.est_free == 4


def test_rtt_measurements_are_smoothed() -> None:
    view = LoadView(self_id="s" * 40, default_rtt_s=0.05)
    assert view.rtt(A) == 0.05
    view.observe_rtt(A, 0.1)
    view.observe_rtt(A, 0.2)
    assert abs(view.rtt(A) - 0.125) < 1e-9


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 99), st.floats(0, 50)), max_size=60))
@settings(max_examples=200)
def test_the_view_holds_the_highest_seq_per_peer_within_its_bound(
    events: list[tuple[int, int, float]],
) -> None:
    view = LoadView(self_id="s" * 40, max_peers=8)
    best: dict[str, int] = {}
    for peer, seq, at in events:
        node_id = f"{peer:040x}"
        load = PeerLoad(node_id, "", seq, 2, 1, 0, False, {}, {}, at)
        if view.update(node_id, load):
            assert seq > best.get(node_id, -1)
            best[node_id] = seq
        assert len(view) <= 8
    for node_id, seq in best.items():
        held = view.get(node_id)
        assert held is None or held.seq == seq
