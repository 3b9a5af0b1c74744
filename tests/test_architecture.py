"""The import graph (drawn by grimp) has no circle and no arrow up; docs/architecture.md draws it."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

import p2pfaas

# High to low: a package may import from any layer below its own, never from one above, and never
# from a sibling of its own layer (siblings are independent). The floor's modules may use each other.
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("devnet", "sim", "lab"),
    ("client",),
    ("anchor", "node"),
    ("ledger",),
    ("dht", "trust", "placement", "exec", "db", "bundle", "relay", "metrics"),
]
FLOOR = (
    "rpc",
    "tls",
    "lifecycle",
    "logfmt",
    "messages",
    "channels",
    "backoff",
    "ratelimit",
    "tickets",
    "pricing",
    "signing",
    "identity",
    "codec",
    "money",
    "clock",
    "environment",
    "errors",
)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("p2pfaas")


def test_every_top_level_module_has_a_layer() -> None:
    """A new package or floor module must be given its place here (and in docs/architecture.md)."""
    root = Path(p2pfaas.__file__).parent
    found = {p.stem for p in root.glob("*.py") if p.stem not in ("__init__", "__main__")}
    found |= {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    placed = {name for layer in LAYERS for name in layer} | set(FLOOR)
    assert found == placed


def test_no_arrow_up_and_no_sibling_arrow(graph: grimp.ImportGraph) -> None:
    layers = [grimp.Layer(*layer, independent=True) for layer in LAYERS]
    layers.append(grimp.Layer(*FLOOR, independent=False))
    illegal = graph.find_illegal_dependencies_for_layers(layers=layers, containers={"p2pfaas"})
    arrows = sorted(
        f"{dep.importer} -> {dep.imported}: {[route.heads for route in dep.routes]}" for dep in illegal
    )
    assert arrows == []


def test_no_import_circle(graph: grimp.ImportGraph) -> None:
    """Counting imports made only for type checking: a circle there is as hard to read as any."""
    circles = sorted(
        f"{importer} <-> {imported}"
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )
    assert circles == []
