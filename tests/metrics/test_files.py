"""A node's figures across its processes (`p2pfaas.metrics.files`): a spawned worker records to files,
the primary's exposition sums them into its own, and `reset` drops what an earlier run left."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from p2pfaas.metrics.files import exposition, record_to_files, reset

SPAWN = multiprocessing.get_context("spawn")


def _worker_counts(directory: Path, calls: int) -> None:
    """In a spawned worker (the files mode is a whole process's): count `calls` calls to "f"."""
    record_to_files(directory)
    calls_total = Counter("demo_calls", "calls", ["function"], registry=CollectorRegistry())
    calls_total.labels(function="f").inc(calls)


def _run_worker(directory: Path, calls: int) -> None:
    process = SPAWN.Process(target=_worker_counts, args=(directory, calls))
    process.start()
    process.join()
    assert process.exitcode == 0


def calls_of(text: bytes) -> dict[str, float]:
    return {
        sample.labels["function"]: sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == "demo_calls_total"
    }


def test_the_primarys_figures_and_its_workers_files_are_summed(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    reset(directory)  # makes the directory
    registry = CollectorRegistry()
    primary = Counter("demo_calls", "calls", ["function"], registry=registry)
    primary.labels(function="f").inc(2)
    primary.labels(function="g").inc(1)
    assert calls_of(exposition(registry, None)) == {"f": 2.0, "g": 1.0}
    assert calls_of(exposition(registry, directory)) == {"f": 2.0, "g": 1.0}  # no worker yet
    _run_worker(directory, 3)
    _run_worker(directory, 4)  # a second worker process (or the first, restarted)
    assert list(directory.glob("*.db"))
    assert calls_of(exposition(registry, directory)) == {"f": 9.0, "g": 1.0}
    assert b"_created" not in exposition(registry, directory)
    reset(directory)  # the node starts again: the earlier run's files go
    assert list(directory.glob("*.db")) == []
    assert calls_of(exposition(registry, directory)) == {"f": 2.0, "g": 1.0}
