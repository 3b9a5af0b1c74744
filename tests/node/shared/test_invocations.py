"""The exactly-once invocation table: ids claimed once, results kept for their TTL, spilled, evicted,
freed with a dead worker; and two real processes claiming the same ids."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest

from p2pfaas.errors import Busy
from p2pfaas.node.shared.invocations import INLINE_RESULT_BYTES, WAYS, Claim, ClaimKind, TableFull
from p2pfaas.node.shared.segment import SharedHandle
from p2pfaas.node.shared.tables import SharedTables
from tests.node.shared.conftest import ALICE, BOB, DONE, NEW, RUNNING, TTL_S, MakeTables, run_two


def test_an_id_is_new_once_then_running_then_done(make: MakeTables) -> None:
    table = make().invocations
    assert table.lookup("i1", ALICE, now=1.0) == NEW  # a lookup never takes the id
    assert table.claim("i1", ALICE, worker=0, now=1.0) == NEW
    assert table.claim("i1", ALICE, worker=0, now=2.0) == Claim(RUNNING, 0)  # even for its own worker
    assert table.claim("i1", ALICE, worker=2, now=2.0) == Claim(RUNNING, 0)
    assert table.lookup("i1", ALICE, now=2.0) == Claim(RUNNING, 0)
    table.finish("i1", b"the result", worker=0, now=3.0)
    assert table.claim("i1", ALICE, worker=1, now=4.0) == Claim(DONE, 0, b"the result")
    assert table.lookup("i1", ALICE, now=4.0) == Claim(DONE, 0, b"the result")
    table.finish("i1", b"again", worker=0, now=5.0)  # not RUNNING any more: ignored
    assert table.lookup("i1", ALICE, now=5.0) == Claim(DONE, 0, b"the result")
    big = bytes(range(256)) * (INLINE_RESULT_BYTES // 256) + b"x" * (INLINE_RESULT_BYTES % 256)
    assert len(big) == INLINE_RESULT_BYTES  # the largest result kept inline
    assert table.claim("i2", ALICE, worker=1, now=6.0) == NEW
    table.finish("i2", big, worker=1, now=6.0)
    assert table.claim("i2", ALICE, worker=0, now=7.0) == Claim(DONE, 1, big)


def test_another_owners_request_with_the_same_id_is_refused(make: MakeTables) -> None:
    table = make().invocations
    table.claim("i1", ALICE, worker=0, now=1.0)
    assert table.claim("i1", BOB, worker=1, now=1.0) == Claim(ClaimKind.WRONG_OWNER)
    table.finish("i1", b"alice's", worker=0, now=2.0)
    assert table.claim("i1", BOB, worker=1, now=3.0) == Claim(ClaimKind.WRONG_OWNER)
    assert table.lookup("i1", BOB, now=3.0) == Claim(ClaimKind.WRONG_OWNER)
    assert table.lookup("i1", ALICE, now=3.0).result == b"alice's"


def test_a_failed_invocation_frees_its_id_and_only_its_worker_ends_it(make: MakeTables) -> None:
    table = make().invocations
    table.claim("i1", ALICE, worker=1, now=1.0)
    table.finish("i1", None, worker=2, now=2.0)  # another worker's: ignored
    table.finish("i1", b"wrong", worker=0, now=2.0)
    assert table.lookup("i1", ALICE, now=2.0) == Claim(RUNNING, 1)
    table.finish("i1", None, worker=1, now=2.0)  # failed or cancelled: it may be tried again
    assert table.lookup("i1", ALICE, now=3.0) == NEW
    assert table.claim("i1", BOB, worker=0, now=3.0) == NEW  # the id is free for anyone again
    table.finish("never claimed", b"x", worker=0, now=3.0)  # ignored too
    assert table.lookup("never claimed", ALICE, now=3.0) == NEW


def test_results_expire_after_the_ttl(make: MakeTables) -> None:
    table = make().invocations
    table.claim("i1", ALICE, worker=0, now=100.0)
    table.finish("i1", b"r", worker=0, now=200.0)  # the TTL counts from the finish
    assert table.lookup("i1", ALICE, now=200.0 + TTL_S).kind is DONE
    assert table.lookup("i1", ALICE, now=200.1 + TTL_S) == NEW
    assert table.claim("i1", BOB, worker=1, now=200.1 + TTL_S) == NEW
    table.claim("i2", ALICE, worker=0, now=0.0)
    assert table.lookup("i2", ALICE, now=10 * TTL_S) == Claim(RUNNING, 0)  # running never expires


def test_a_full_set_evicts_the_result_finished_longest_ago_and_never_a_running_one(make: MakeTables) -> None:
    table = make(result_slots=WAYS).invocations  # one set: every id competes for the same ways
    ids = [f"i{n}" for n in range(WAYS)]
    for n, invocation_id in enumerate(ids):
        assert table.claim(invocation_id, ALICE, worker=0, now=n) == NEW
    for n, invocation_id in enumerate(reversed(ids)):  # i7 finished first, i0 last
        table.finish(invocation_id, invocation_id.encode(), worker=0, now=10.0 + n)
    assert table.claim("new 1", ALICE, worker=0, now=20.0) == NEW
    assert table.lookup("i7", ALICE, now=20.0) == NEW  # evicted
    assert all(table.lookup(i, ALICE, now=20.0).kind is DONE for i in ids[:-1])
    assert table.claim("new 2", ALICE, worker=0, now=20.0) == NEW
    assert table.lookup("i6", ALICE, now=20.0) == NEW
    for n in range(3, WAYS + 1):  # the six other results make room in turn
        assert table.claim(f"new {n}", ALICE, worker=0, now=20.0) == NEW
    assert all(table.lookup(i, ALICE, now=20.0) == NEW for i in ids)
    with pytest.raises(TableFull, match="too many invocations in progress") as full:
        table.claim("one more", ALICE, worker=1, now=20.0)
    assert isinstance(full.value, Busy) and full.value.status == 503
    assert all(table.lookup(f"new {n}", ALICE, now=20.0) == Claim(RUNNING, 0) for n in range(1, WAYS + 1))
    table.finish("new 5", None, worker=0, now=21.0)
    assert table.claim("one more", ALICE, worker=1, now=21.0) == NEW


def test_large_results_spill_to_a_file_and_a_vanished_file_means_lost(
    make: MakeTables, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    (spill / ("ab" * 16)).write_bytes(b"from a previous run")
    (spill / "keep.me").write_bytes(b"not ours")
    table = make(result_slots=WAYS).invocations
    assert sorted(p.name for p in spill.iterdir()) == ["keep.me"]  # only our stale files are cleared
    large = b"L" * (INLINE_RESULT_BYTES + 1)
    table.claim("big", ALICE, worker=2, now=1.0)
    table.finish("big", large, worker=2, now=1.0)
    files = [p for p in spill.iterdir() if p.name != "keep.me"]
    assert len(files) == 1 and files[0].read_bytes() == large
    assert table.claim("big", ALICE, worker=0, now=2.0) == Claim(DONE, 2, large)
    assert table.lookup("big", BOB, now=2.0) == Claim(ClaimKind.WRONG_OWNER)
    files[0].unlink()
    assert table.lookup("big", ALICE, now=2.0) == Claim(ClaimKind.LOST, 2)
    assert table.claim("big", ALICE, worker=0, now=2.0) == Claim(ClaimKind.LOST, 2)  # never run twice
    # Its slot reused (expired), and another evicted: their files go with them.
    table.claim("big 2", ALICE, worker=0, now=3.0)
    table.finish("big 2", large, worker=0, now=3.0)
    assert table.claim("big", ALICE, worker=1, now=3.0 + TTL_S) == NEW
    for n in range(WAYS - 1):
        table.claim(f"small {n}", ALICE, worker=0, now=4.0 + TTL_S)
    assert table.lookup("big 2", ALICE, now=4.0 + TTL_S) == NEW
    assert sorted(p.name for p in spill.iterdir()) == ["keep.me"]
    # A spilled result whose id is no longer the worker's (here: released) leaves no file behind.
    table.finish("big", large, worker=0, now=5.0 + TTL_S)
    assert sorted(p.name for p in spill.iterdir()) == ["keep.me"]


def test_a_dead_workers_running_invocations_are_freed(make: MakeTables) -> None:
    table = make().invocations
    for n in range(5):
        table.claim(f"w1 {n}", ALICE, worker=1, now=1.0)
        table.claim(f"w2 {n}", ALICE, worker=2, now=1.0)
    table.finish("w1 0", b"done before it died", worker=1, now=2.0)
    assert table.release_worker(1) == 4
    assert table.release_worker(1) == 0
    assert table.lookup("w1 0", ALICE, now=3.0) == Claim(DONE, 1, b"done before it died")
    assert all(table.lookup(f"w1 {n}", ALICE, now=3.0) == NEW for n in range(1, 5))
    assert all(table.lookup(f"w2 {n}", ALICE, now=3.0) == Claim(RUNNING, 2) for n in range(5))


IDS = [f"invocation {n}" for n in range(2000)]


def _claim_every_id(handle: SharedHandle, worker: int, start: Any, answers: Any) -> None:
    """In a spawned worker: claim every id, run (finish) those it got, then read every result."""
    try:
        tables = SharedTables.attach(handle)
        try:
            table = tables.invocations
            start.wait()
            ran = []
            for invocation_id in IDS:
                if table.claim(invocation_id, ALICE, worker=worker, now=1.0) == NEW:
                    ran.append(invocation_id)
                    table.finish(
                        invocation_id, f"{worker} ran {invocation_id}".encode(), worker=worker, now=1.0
                    )
            start.wait()  # both have finished what they ran
            problems = []
            for invocation_id in IDS:
                claim = table.claim(invocation_id, ALICE, worker=worker, now=2.0)
                if claim.kind is not DONE or claim.result != f"{claim.worker} ran {invocation_id}".encode():
                    problems.append(f"{invocation_id}: {claim}")
            answers.put((worker, ran, problems))
        finally:
            tables.close()
    except BaseException:
        answers.put((worker, [], [traceback.format_exc()]))


def test_two_processes_claiming_the_same_ids_run_each_exactly_once(make: MakeTables) -> None:
    tables = make(result_slots=16384)
    ran = run_two(_claim_every_id, tables.handle)
    assert set(ran[1]).isdisjoint(ran[2])
    assert sorted(ran[1] + ran[2]) == sorted(IDS)
    assert tables.invocations.lookup(IDS[0], ALICE, now=3.0).kind is DONE
