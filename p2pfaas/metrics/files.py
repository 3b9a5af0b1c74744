"""A node's figures across its worker processes, with prometheus-client's multiprocess mode.

A worker calls `record_to_files(directory)` before it builds its metrics: from then on its counters
and histograms live in memory-mapped files there (one per process and kind). The primary keeps its
own figures in memory, and `exposition(registry, directory)` sums the two, sample by sample, so
one scrape of the node's port covers every process. `reset(directory)` at the node's start drops
the files of an earlier run; a worker that dies leaves its counts, as counters should.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["exposition", "record_to_files", "reset"]


def record_to_files(directory: Path) -> None:
    """Make this process's metrics, from now on, live in files under `directory` (a worker only:
    the mode is the whole process's)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def reset(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def exposition(registry: CollectorRegistry, directory: Path | None) -> bytes:
    """The text format of `registry`, plus (summed in) the worker processes' files in `directory`."""
    if directory is None:
        return generate_latest(registry)
    workers = MultiProcessCollector(None, path=str(directory))  # type: ignore[no-untyped-call]
    return generate_latest(_Summed([registry, workers]))


class _Summed(Collector):
    """Families of the same name from several sources as one, their equal samples added up
    (`_created` samples dropped: a sum of start times means nothing)."""

    def __init__(self, sources: Iterable[Collector]) -> None:
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for source in self.sources:
            for family in source.collect():
                if family.name not in families:
                    families[family.name] = Metric(family.name, family.documentation, family.type)
                totals = sums.setdefault(family.name, {})
                for sample in family.samples:
                    if sample.name.endswith("_created"):
                        continue
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    totals[key] = totals.get(key, 0.0) + sample.value
        for name, family in families.items():
            for (sample_name, labels), value in sums[name].items():
                family.add_sample(sample_name, dict(labels), value)
            yield family
