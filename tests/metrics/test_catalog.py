"""The metrics catalog: every reading's name unique and documented in docs/metrics.md; function labels
bounded."""

from __future__ import annotations

from p2pfaas.metrics.catalog import ANCHOR_READINGS, NODE_READINGS, FunctionLabels
from tests.metrics.conftest import documented


def test_reading_names_are_unique_and_documented() -> None:
    names = documented()
    for prefix, readings in (("p2pfaas_node", NODE_READINGS), ("p2pfaas_anchor", ANCHOR_READINGS)):
        assert len({r.name for r in readings}) == len(readings)
        for reading in readings:
            assert names.get(f"{prefix}_{reading.name}") == reading.kind, reading.name


def test_function_labels_are_bounded() -> None:
    labels = FunctionLabels(limit=3)
    assert [labels(f"f{n}") for n in range(5)] == ["f0", "f1", "f2", "other", "other"]
    assert labels("f1") == "f1"
    assert labels.known("f9") == "other" and labels.known("f0") == "f0"  # refused calls take no place
