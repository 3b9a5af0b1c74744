"""The warm-pool policy's books (`p2pfaas.exec.pool_table`): instances added busy with their
function's memory, slots counted against the concurrency, a function remembered while anything of
it is, an unknown instance refused."""

from __future__ import annotations

import pytest

from p2pfaas.errors import LocalError
from p2pfaas.exec.pool_table import FunctionInstances, InstanceState, PoolTable


def test_an_instance_is_added_busy_and_forgotten_with_its_memory() -> None:
    table = PoolTable()
    fn = table.functions.setdefault("f", FunctionInstances(memory_mb=128))
    tracked = table.add("a", "f", fn, now=5.0)
    assert (tracked.state, tracked.since, tracked.memory_mb) == (InstanceState.BUSY, 5.0, 128)
    table.add("b", "f", fn, now=6.0)
    assert (table.count("f"), table.memory_used_mb, table.state("a")) == (2, 256, InstanceState.BUSY)
    table.forget("a", table.get("a"))
    assert (table.count("f"), table.memory_used_mb, table.state("a")) == (1, 128, None)
    table.forget("b", table.get("b"))
    assert table.functions == {} and table.memory_used_mb == 0  # nothing of it left to remember
    with pytest.raises(LocalError, match="unknown instance"):
        table.get("a")


def test_a_function_is_remembered_while_its_last_call_ended_is_worth_knowing() -> None:
    table = PoolTable()
    fn = table.functions.setdefault("f", FunctionInstances(memory_mb=64))
    table.add("a", "f", fn, now=0.0)
    fn.last_end = 3.0  # the next arrival's idle time is measured from it
    table.forget("a", table.get("a"))
    assert table.functions == {"f": fn} and table.count("f") == 0 and table.idle_count("f") == 0


def test_an_instance_has_free_slots_until_it_runs_its_concurrency() -> None:
    table = PoolTable()
    fn = table.functions.setdefault("f", FunctionInstances(concurrency=2))
    tracked = table.add("a", "f", fn, now=0.0)
    table.busy("a", fn, now=0.0)
    assert (tracked.in_use, fn.invoking, fn.partial) == (1, 1, ["a"])
    table.busy("a", fn, now=0.0)
    assert (tracked.in_use, fn.invoking, fn.partial) == (2, 2, [])  # full: no slot left
    tracked.state, tracked.in_use, fn.invoking = InstanceState.IDLE, 0, 0
    table.busy("a", fn, now=9.0)  # an idle instance reused: busy since now
    assert (tracked.state, tracked.since, fn.partial) == (InstanceState.BUSY, 9.0, ["a"])
