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
    "tunnel",
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


# Modules with no tests/X/test_Y.py of their own, each for a reason. A module that gets one leaves the list.
NO_MIRRORED_TEST = {
    # Test kits themselves, exercised by every test that uses them.
    "db/testing.py",  # the shared MariaDB test database, taken exclusively
    "sim/testbed.py",  # the real anchor and nodes on simulated hosts, for tests, benchmarks and scenarios
}
NO_MIRRORED_TEST_UNDER = (
    "db/migrations/",  # by the migration tests (tests/db/test_engine.py; 0004, 0005 in tests/ledger/)
    "sample/",  # a sample function, packed and run by tests/bundle/test_pack.py
)


def mirrored_test(module: str) -> Path:
    """tests/X/test_Y.py for p2pfaas/X/Y.py (tests/test_Y.py for p2pfaas/Y.py)."""
    path = Path(module)
    return Path("tests", path.parent, f"test_{path.name}")


def test_every_module_has_a_test_of_its_name() -> None:
    """The tests of a module are where a reader looks for them (docs/architecture.md, "Tests mirror")."""
    root = Path(p2pfaas.__file__).parent
    repo = root.parent
    modules = {
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }
    has_test = {module for module in modules if (repo / mirrored_test(module)).is_file()}
    assert sorted(NO_MIRRORED_TEST - (modules - has_test)) == [], "gone, or tested now: drop from the list"
    missing = sorted(
        module
        for module in modules - has_test - NO_MIRRORED_TEST
        if not module.startswith(NO_MIRRORED_TEST_UNDER)
    )
    assert missing == []
