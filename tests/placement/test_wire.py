"""Placement's wire messages (`p2pfaas.placement.wire`): the checks each runs, when made and when
decoded from a peer's bytes."""

from __future__ import annotations

import pytest

from p2pfaas import codec
from p2pfaas.errors import DecodeError
from p2pfaas.messages import InvokeRequest
from p2pfaas.placement.wire import (
    JOB_STATES,
    MAX_HOPS,
    DrainRequest,
    ForwardRequest,
    FunctionLoad,
    JobPoll,
    JobStatus,
    LoadReport,
)
from tests.wirekit import rewired


def report(**change: int) -> LoadReport:
    fields = {"seq": 1, "capacity": 4, "free_slots": 9, "queue_length": 0} | change
    return LoadReport(
        "http://10.0.0.1:8800",
        fields["seq"],
        1.0,
        fields["capacity"],
        fields["free_slots"],
        fields["queue_length"],
        False,
        (FunctionLoad("ab" * 32, 1, 0),),
        signer=b"k" * 32,
        signature=b"s" * 64,
    )


def test_a_load_report_round_trips_and_refuses_negative_counts() -> None:
    good = report()  # more free slots than capacity is a hint the view clamps, not an error
    assert codec.decode_as(LoadReport, codec.encode(good)) == good
    for change in ({"seq": -1}, {"capacity": -1}, {"free_slots": -1}, {"queue_length": -1}):
        with pytest.raises(ValueError, match="must not be negative"):
            report(**change)
    with pytest.raises(DecodeError):
        codec.decode_as(LoadReport, rewired(good, "seq", -5))
    with pytest.raises(ValueError, match="warm and queued"):
        FunctionLoad("ab" * 32, -1, 0)


def test_drains_jobs_and_polls_check_their_fields() -> None:
    drain = DrainRequest(30.0, 1.0, signer=b"k" * 32, signature=b"s" * 64)
    assert codec.decode_as(DrainRequest, codec.encode(drain)) == drain
    for deadline in (0.0, 3601.0):
        with pytest.raises(DecodeError, match="drain_deadline_s"):
            codec.decode_as(DrainRequest, rewired(drain, "drain_deadline_s", deadline))
    for state in JOB_STATES:
        assert JobStatus("i", state, None, "").job_state == state
    with pytest.raises(ValueError, match="is not one of"):
        JobStatus("i", "lost", None, "")
    with pytest.raises(ValueError, match="names its invocation"):
        JobPoll("", "a" * 40, 1.0, signer=b"k" * 32, signature=b"s" * 64)
    request = InvokeRequest("i", "ab" * 32, b"{}", 1.0, None, signer=b"", signature=b"")
    forward = ForwardRequest(request, MAX_HOPS, True, signer=b"k" * 32, signature=b"s" * 64)
    assert codec.decode_as(ForwardRequest, codec.encode(forward)) == forward
    for hops in (0, MAX_HOPS + 1):
        with pytest.raises(DecodeError, match="hops"):
            codec.decode_as(ForwardRequest, rewired(forward, "hops", hops))
