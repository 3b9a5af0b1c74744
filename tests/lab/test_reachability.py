"""Off loopback: nodes learn their address, those behind NAT are reached through relays, and a dead
relay is replaced; lessees behind NAT deploy and invoke on every kind of node. Real processes in the lab.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pfaas.identity import KeyPair
from p2pfaas.lab import Lab, LabSpec
from p2pfaas.lab.processes import LabProcesses, wait_for
from p2pfaas.relay import relay_path
from tests.lab.conftest import lab_or_skip

ANCHOR = "http://192.0.2.11:8700"
# pub2's node: its key is made before it starts, so its HTTPS URL (which names its identity) is known.
PUB2_KEY = KeyPair.from_seed(b"lab/pub2")
PUB2 = f"https://192.0.2.12:8800/n/{PUB2_KEY.key_id}"
SAMPLE = Path(__file__).parents[2] / "p2pfaas" / "sample" / "hello"

# Prints the anchor's node list as JSON: {node_id: url}.
LIST_NODES = """
import asyncio, json, sys
from p2pfaas.client import AsyncClient
from p2pfaas.identity import KeyPair
async def main():
    async with AsyncClient(sys.argv[1], KeyPair.generate()) as client:
        print(json.dumps({n.node_id: n.url for n in await client.nodes(refresh=True)}))
asyncio.run(main())
"""

# Deploys the sample function (once per key) and invokes it at each URL given; prints what ran where.
INVOKE = """
import asyncio, json, sys
from pathlib import Path
from p2pfaas.client import AsyncClient
from p2pfaas.identity import KeyPair
async def main():
    anchor, key, sample, *urls = sys.argv[1:]
    async with AsyncClient(anchor, KeyPair.load_or_create(Path(key))) as client:
        await client.deploy(Path(sample))
        out = []
        for url in urls:
            got = await client.invoke("hello", {"name": "lab", "numbers": [1, 2]}, node_url=url)
            out.append({"url": url, "node": got.node_id, "value": got.value})
        print(json.dumps(out))
asyncio.run(main())
"""

WHOAMI = """
import sys, urllib.request
from p2pfaas import codec
from p2pfaas.messages import Observed
with urllib.request.urlopen(sys.argv[1] + "/v1/whoami", timeout=5) as r:
    print(codec.decode_as(Observed, r.read()).address)
"""


@pytest.fixture(scope="module")
def lab(lab_state_dir: Path) -> Iterator[Lab]:
    with lab_or_skip(LabSpec(public=2, homes=2, per_home=2), lab_state_dir) as built:
        yield built


@pytest.fixture(scope="module")
def network(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProcesses]:
    """An anchor on pub1, a public node on pub2, nodes behind both home routers (home1-1 asks for
    pub2 as its relay; home2-1 finds one by itself)."""
    directory = tmp_path_factory.mktemp("lab-net")
    with LabProcesses(lab, directory) as procs:
        db = f"sqlite+aiosqlite:///{directory / 'anchor.db'}"
        procs.p2pfaas(
            "pub1", "anchor", "anchor", "serve", "--host", "0.0.0.0", "--port", "8700", "--dht-port", "8700",
            "--db", db, "--public-url", ANCHOR,
        )  # fmt: skip
        procs.wait_http("pub1", f"{ANCHOR}/v1/health", name="anchor")
        PUB2_KEY.save(directory / "pub2" / "node.key")
        for host, extra in (
            ("pub2", ()),
            ("home1-1", ("--relay", PUB2)),
            ("home2-1", ()),
        ):
            procs.p2pfaas(
                host, host, "node", "run", "--anchor", ANCHOR, "--host", "0.0.0.0", "--port", "8800",
                "--dht-port", "8800", "--peer", "192.0.2.11:8700", "--work-dir", str(directory / host),
                "--executor", "process", "--allow-unsandboxed", "--unpaid-owners", *extra,
            )  # fmt: skip
            if host == "pub2":  # the relay home1-1 asks for is up first
                procs.wait_http("pub1", f"{PUB2}/v1/status", name=host)
        yield procs


def lessee_key(procs: LabProcesses) -> str:
    return str(procs.directory / "lessee.key")  # one lessee for the module: the function is deployed once


def listed(procs: LabProcesses) -> dict[str, str]:
    return dict(json.loads(procs.python("home2-2", LIST_NODES, ANCHOR)))


def wait_listed(procs: LabProcesses, check: object, what: str) -> dict[str, str]:
    seen: dict[str, str] = {}

    def ok() -> bool:
        seen.clear()
        seen.update(listed(procs))
        return callable(check) and bool(check(seen))

    try:
        wait_for(ok, timeout_s=90, what=what, every_s=1.0)
    except Exception:
        for name in procs.procs:
            print(f"--- {name}\n{procs.tail(name)}")
        raise
    return seen


def test_the_anchor_echoes_the_address_it_sees(network: LabProcesses) -> None:
    assert network.python("home1-2", WHOAMI, ANCHOR).strip() == "203.0.113.11"  # the router's
    assert network.python("pub2", WHOAMI, ANCHOR).strip() == "192.0.2.12"


def settled(nodes: dict[str, str]) -> bool:
    return len(nodes) == 3 and sum("/v1/relay/" in u for u in nodes.values()) == 2


def test_a_public_node_is_direct_and_nodes_behind_nat_are_relayed(network: LabProcesses) -> None:
    nodes = wait_listed(network, settled, "three nodes listed, two of them relayed")
    urls = sorted(nodes.values())
    assert PUB2 in urls  # the public node, at the address the anchor saw, over TLS on its own key
    relayed = {node_id: url for node_id, url in nodes.items() if "/v1/relay/" in url}
    for node_id, url in relayed.items():
        assert url.endswith(relay_path(node_id))
        assert url.startswith((f"{PUB2}/", f"{ANCHOR}/"))  # a public node or the anchor
    # home1-1 asked for pub2 as its relay.
    assert f"relay {PUB2}" in network.tail("home1-1", 200)


def test_a_lessee_behind_nat_invokes_every_node_through_whatever_reaches_it(network: LabProcesses) -> None:
    nodes = wait_listed(network, settled, "three nodes listed, two of them relayed")
    ran = json.loads(
        network.python("home2-2", INVOKE, ANCHOR, lessee_key(network), str(SAMPLE), *nodes.values())
    )
    assert [r["url"] for r in ran] == list(nodes.values())
    for r in ran:
        assert r["value"]["greeting"] == "hello lab" and r["value"]["sum"] == 3
    assert {r["node"] for r in ran} == set(nodes)  # each node ran the call it was given


def test_a_dead_relay_is_replaced_and_the_node_is_reached_again(network: LabProcesses) -> None:
    nodes = wait_listed(network, settled, "three nodes listed, two of them relayed")
    home1 = next(i for i, u in nodes.items() if u.startswith(f"{PUB2}/v1/relay/"))
    network.kill("pub2")  # the relay of home1-1 dies without a word

    def moved(n: dict[str, str]) -> bool:
        return n.get(home1, "").startswith(f"{ANCHOR}/v1/relay/")

    nodes = wait_listed(network, moved, "home1-1 relayed through the anchor")
    ran = json.loads(
        network.python("home2-2", INVOKE, ANCHOR, lessee_key(network), str(SAMPLE), nodes[home1])
    )
    assert ran[0]["node"] == home1
