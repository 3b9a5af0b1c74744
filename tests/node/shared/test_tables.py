"""A node's cross-process tables: real shared memory, and real spawned processes where it matters."""

from __future__ import annotations

import multiprocessing
import signal
import tempfile
import traceback
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfaas.errors import Busy, ConfigError
from p2pfaas.node.payments.spends import FORGET_AFTER_S, PaymentRequired, VoucherSpend
from p2pfaas.node.shared.invocations import INLINE_RESULT_BYTES, WAYS, Claim, ClaimKind, TableFull
from p2pfaas.node.shared.loads import LoadRow
from p2pfaas.node.shared.segment import SharedHandle
from p2pfaas.node.shared.tables import SharedTables

NEW, RUNNING, DONE = Claim(ClaimKind.NEW), ClaimKind.RUNNING, ClaimKind.DONE
ALICE, BOB = b"alice key + digest", b"bob key + digest"
TTL_S = 600.0
SPAWN = multiprocessing.get_context("spawn")

MakeTables = Callable[..., SharedTables]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[MakeTables]:
    """SharedTables.create with small defaults; every segment made is closed and unlinked after."""
    made: list[SharedTables] = []

    def create(**options: Any) -> SharedTables:
        settings: dict[str, Any] = {
            "workers": 3,
            "result_slots": 64,
            "voucher_slots": 32,
            "result_ttl_s": TTL_S,
            "spill_dir": tmp_path / "spill",
        }
        made.append(SharedTables.create(**(settings | options)))
        return made[-1]

    yield create
    for tables in made:
        tables.close()
        tables.unlink()


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


def test_voucher_totals_check_and_add_and_reclaim_long_expired_vouchers(make: MakeTables) -> None:
    spends = make(voucher_slots=16).spends  # one set of 16 ways
    assert spends.get("v0") is None
    assert spends.reserve("v0", budget_micro=100, expires_at=1000.0, cost_micro=60, worker=0, now=0.0) is None
    assert spends.reserve("v0", budget_micro=100, expires_at=1000.0, cost_micro=41, worker=1, now=0.0) == 40
    spends.release("v0", reserved_micro=10, worker=0)
    spends.release("unknown", reserved_micro=10, worker=0)  # ignored
    spends.restore("v0", budget_micro=100, expires_at=1000.0, charged_micro=5, now=0.0)
    assert spends.get("v0") == VoucherSpend(100, 1000.0, committed_micro=55, charged_micro=5)
    for n in range(1, 16):
        assert (
            spends.reserve(f"v{n}", budget_micro=10, expires_at=5000.0, cost_micro=1, worker=2, now=0.0)
            is None
        )
    with pytest.raises(PaymentRequired, match="voucher table is full") as full:
        spends.reserve("v16", budget_micro=10, expires_at=5000.0, cost_micro=1, worker=0, now=0.0)
    assert full.value.status == 402
    late = 1000.0 + FORGET_AFTER_S + 1  # v0 is long expired: its entry is taken, and starts empty
    assert spends.reserve("v16", budget_micro=10, expires_at=9000.0, cost_micro=1, worker=1, now=late) is None
    assert spends.get("v0") is None
    assert spends.get("v16") == VoucherSpend(10, 9000.0, committed_micro=1, charged_micro=0)
    assert spends.release_worker(0) == 0  # v0's 50 went with its entry
    assert spends.forget(now=5000.0 + FORGET_AFTER_S + 1) == 15
    assert spends.get("v16") is not None and spends.get("v1") is None
    assert spends.release_worker(2) == 0  # forgotten with their vouchers


def test_settling_moves_a_workers_reservation_to_charged_and_a_dead_workers_are_dropped(
    make: MakeTables,
) -> None:
    spends = make(workers=3).spends
    for worker, cost in ((0, 100), (1, 300), (1, 200), (2, 50)):
        assert (
            spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=cost, worker=worker, now=0.0)
            is None
        )
    spends.reserve("w", budget_micro=1000, expires_at=9e9, cost_micro=70, worker=1, now=0.0)
    spends.settle("v", reserved_micro=200, charge_micro=120, worker=1)  # ran cheaper than reserved
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=100 + 300 + 120 + 50, charged_micro=120)
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=431, worker=0, now=0.0) == 430
    assert spends.release_worker(1) == 300 + 70  # every voucher's column of worker 1
    assert spends.release_worker(1) == 0
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=100 + 120 + 50, charged_micro=120)
    assert spends.get("w") == VoucherSpend(1000, 9e9, committed_micro=0, charged_micro=0)
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=730, worker=1, now=0.0) is None
    spends.settle("v", reserved_micro=50, charge_micro=50, worker=2)  # the others' are untouched
    spends.release("v", reserved_micro=100, worker=0)
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=120 + 50 + 730, charged_micro=170)
    with pytest.raises(AssertionError):  # a worker settles only what it reserved itself
        spends.settle("v", reserved_micro=1, charge_micro=1, worker=2)
    with pytest.raises(AssertionError):
        spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=1, worker=3, now=0.0)


def test_every_workers_column_and_the_load_board_have_bytes_of_their_own(make: MakeTables) -> None:
    tables = make(workers=3, voucher_slots=16)  # one set: every entry used
    spends, loads = tables.spends, tables.loads
    for n in range(16):
        for worker in range(3):
            cost = 100 * n + worker + 1
            assert (
                spends.reserve(
                    f"v{n}", budget_micro=10**6, expires_at=9e9, cost_micro=cost, worker=worker, now=0.0
                )
                is None
            )
    for worker in range(3):
        loads.write(worker, LoadRow(*[-1] * 6))
    assert loads.totals() == LoadRow(*[-3] * 6)
    for n in range(16):
        spend = spends.get(f"v{n}")
        assert spend is not None and spend.committed_micro == 300 * n + 6
    assert [spends.release_worker(worker) for worker in (2, 0, 1)] == [
        sum(100 * n + worker + 1 for n in range(16)) for worker in (2, 0, 1)
    ]
    assert loads.totals() == LoadRow(*[-3] * 6)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["reserve", "settle", "release", "release_worker"]),
            st.integers(0, 2),  # worker
            st.sampled_from(["v", "w"]),
            st.integers(0, 400),  # a cost, or a charge, or which reservation
        ),
        max_size=60,
    )
)
def test_spends_follow_a_model_and_never_pass_a_budget(ops: list[tuple[str, int, str, int]]) -> None:
    """Against a model: per voucher, what was charged and each worker's open reservations."""
    with tempfile.TemporaryDirectory() as spill:
        tables = SharedTables.create(workers=3, result_slots=WAYS, voucher_slots=16, spill_dir=Path(spill))
        try:
            spends = tables.spends
            charged = {"v": 0, "w": 0}
            holds: list[tuple[str, int, int]] = []  # (voucher, worker, reserved)
            for op, worker, voucher, amount in ops:
                mine = [hold for hold in holds if hold[1] == worker]
                if op == "reserve":
                    committed = charged[voucher] + sum(cost for v, _, cost in holds if v == voucher)
                    left = spends.reserve(
                        voucher, budget_micro=1000, expires_at=9e9, cost_micro=amount, worker=worker, now=0.0
                    )
                    assert left == (None if committed + amount <= 1000 else 1000 - committed)
                    if left is None:
                        holds.append((voucher, worker, amount))
                elif op == "release_worker":
                    assert spends.release_worker(worker) == sum(cost for _, _, cost in mine)
                    holds = [hold for hold in holds if hold[1] != worker]
                elif mine:
                    hold = mine[amount % len(mine)]
                    holds.remove(hold)
                    charge = min(amount, hold[2]) if op == "settle" else 0
                    spends.settle(hold[0], reserved_micro=hold[2], charge_micro=charge, worker=worker)
                    charged[hold[0]] += charge
                for v in ("v", "w"):
                    spend = spends.get(v)
                    reserved = sum(cost for held, _, cost in holds if held == v)
                    assert spend is None or (spend.charged_micro, spend.committed_micro) == (
                        charged[v],
                        charged[v] + reserved,
                    )
                    assert spend is None or spend.committed_micro <= spend.budget_micro
        finally:
            tables.close()
            tables.unlink()


def test_the_load_board_sums_the_workers_rows(make: MakeTables) -> None:
    loads = make(workers=3).loads
    assert loads.totals() == LoadRow()
    loads.write(0, LoadRow(slots=4, free_slots=1, queue_length=0, running=3, invocations=100))
    loads.write(2, LoadRow(slots=4, free_slots=0, queue_length=5, running=4, invocations=7))
    assert loads.row(2) == LoadRow(4, 0, 5, 4, 7)
    assert loads.row(1) == LoadRow()
    assert loads.totals() == LoadRow(8, 1, 5, 7, 107)
    assert loads.totals(exclude=0) == LoadRow(4, 0, 5, 4, 7)


def test_attaching_leaves_the_segment_to_its_creators_resource_tracker(
    make: MakeTables, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[str] = []
    register = resource_tracker.register

    def spy(name: str, rtype: str) -> None:
        registered.append(rtype)
        register(name, rtype)

    monkeypatch.setattr(resource_tracker, "register", spy)
    tables = make()
    assert registered.count("shared_memory") == 1  # the creator's: its unlink withdraws it
    attached = SharedTables.attach(tables.handle)
    assert registered.count("shared_memory") == 1
    attached.invocations.claim("i", ALICE, worker=1, now=1.0)
    attached.close()
    assert tables.invocations.lookup("i", ALICE, now=1.0) == Claim(RUNNING, 1)


def test_sizes_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        SharedTables.create(workers=1, result_slots=12, spill_dir=tmp_path)
    with pytest.raises(ConfigError):
        SharedTables.create(workers=0, spill_dir=tmp_path)


# --- two processes --------------------------------------------------------------------------------

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


def _reserve_until_refused(handle: SharedHandle, worker: int, start: Any, answers: Any) -> None:
    """In a spawned worker: reserve 7 on one voucher 200 times; how many were accepted."""
    try:
        tables = SharedTables.attach(handle)
        try:
            start.wait()
            accepted = sum(
                tables.spends.reserve(
                    "v", budget_micro=1000, expires_at=9e9, cost_micro=7, worker=worker, now=1.0
                )
                is None
                for _ in range(200)
            )
            answers.put((worker, accepted, []))
        finally:
            tables.close()
    except BaseException:
        answers.put((worker, 0, [traceback.format_exc()]))


def _run_two(target: Callable[..., None], handle: SharedHandle) -> dict[int, Any]:
    start, answers = SPAWN.Barrier(2), SPAWN.Queue()
    processes = [SPAWN.Process(target=target, args=(handle, worker, start, answers)) for worker in (1, 2)]
    for process in processes:
        process.start()
    got = {}
    try:
        for _ in processes:
            worker, answer, problems = answers.get(timeout=120)  # guards against a hang, times nothing
            assert problems == [], problems
            got[worker] = answer
    finally:
        for process in processes:
            process.join()
        answers.close()
    assert [process.exitcode for process in processes] == [0, 0]
    return got


def test_two_processes_claiming_the_same_ids_run_each_exactly_once(make: MakeTables) -> None:
    tables = make(result_slots=16384)
    ran = _run_two(_claim_every_id, tables.handle)
    assert set(ran[1]).isdisjoint(ran[2])
    assert sorted(ran[1] + ran[2]) == sorted(IDS)
    assert tables.invocations.lookup(IDS[0], ALICE, now=3.0).kind is DONE


def test_two_processes_reserving_on_one_voucher_never_pass_its_budget(make: MakeTables) -> None:
    tables = make()
    accepted = _run_two(_reserve_until_refused, tables.handle)
    assert accepted[1] + accepted[2] == 1000 // 7
    spend = tables.spends.get("v")
    assert spend is not None and spend.committed_micro == 1000 // 7 * 7


def _reserve_then_hang(handle: SharedHandle, worker: int, answers: Any, never: Any) -> None:
    """In a spawned worker: charge 150 and hold 400 on voucher "v", then wait to be SIGKILLed."""
    try:
        tables = SharedTables.attach(handle)  # never closed: the process is killed
        spends = tables.spends
        for cost in (300, 200, 100):
            left = spends.reserve(
                "v", budget_micro=1000, expires_at=9e9, cost_micro=cost, worker=worker, now=1.0
            )
            assert left is None, left
        spends.settle("v", reserved_micro=200, charge_micro=150, worker=worker)  # one of them ran
        answers.put((worker, None, []))
    except BaseException:
        answers.put((worker, None, [traceback.format_exc()]))
        return
    never.wait()


def test_a_killed_workers_reservations_are_freed_and_its_charges_stay(make: MakeTables) -> None:
    tables = make(workers=3)
    spends = tables.spends
    spends.restore("v", budget_micro=1000, expires_at=9e9, charged_micro=100, now=1.0)  # the spend log's
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=50, worker=2, now=1.0) is None
    answers, never = SPAWN.Queue(), SPAWN.Event()
    process = SPAWN.Process(target=_reserve_then_hang, args=(tables.handle, 1, answers, never))
    process.start()
    try:
        _, _, problems = answers.get(timeout=120)  # guards against a hang, times nothing
        assert problems == [], problems
    finally:
        process.kill()
        process.join()
        answers.close()
    assert process.exitcode == -signal.SIGKILL
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=100 + 50 + 150 + 400, charged_micro=250)
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=301, worker=0, now=2.0) == 300
    assert spends.release_worker(1) == 400  # the primary saw it die
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=100 + 50 + 150, charged_micro=250)
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=700, worker=0, now=2.0) is None
    assert spends.reserve("v", budget_micro=1000, expires_at=9e9, cost_micro=1, worker=1, now=2.0) == 0
    spends.settle("v", reserved_micro=50, charge_micro=40, worker=2)  # the live sibling's is intact
    assert spends.get("v") == VoucherSpend(1000, 9e9, committed_micro=100 + 150 + 40 + 700, charged_micro=290)
