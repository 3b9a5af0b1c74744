"""Off loopback: nodes learn their address, those behind NAT are reached through relays, and a dead
relay is replaced; lessees behind NAT deploy and invoke on every kind of node. Real processes in the lab.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p2pfaas.identity import KeyPair
from p2pfaas.lab import Lab, LabSpec, netns
from p2pfaas.lab.processes import LabProcesses
from p2pfaas.relay import relay_path
from tests.lab.conftest import lab_or_skip
from tests.lab.labkit import ANCHOR, start_anchor, start_node, wait_listed

# pub2's node: its key is made before it starts, so its HTTPS URL (which names its identity) is known.
PUB2_KEY = KeyPair.from_seed(b"lab/pub2")
PUB2 = f"https://192.0.2.12:8800/n/{PUB2_KEY.key_id}"
HOME2 = KeyPair.from_seed(b"lab/home2-1").key_id  # its key is saved before it starts, too
SAMPLE = Path(__file__).parents[2] / "p2pfaas" / "sample" / "hello"

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
    pub2 as its relay; home2-1 finds one by itself, and asks every 2 s whether it is still behind NAT)."""
    directory = tmp_path_factory.mktemp("lab-net")
    with LabProcesses(lab, directory) as procs:
        start_anchor(procs, "--reachability-recheck", "5")  # a lost port forward is noticed soon
        PUB2_KEY.save(directory / "pub2" / "node.key")
        KeyPair.from_seed(b"lab/home2-1").save(directory / "home2-1" / "node.key")
        for host, extra in (
            ("pub2", ()),
            ("home1-1", ("--relay", PUB2)),
            ("home2-1", ("--direct-retest", "2")),
        ):
            start_node(procs, host, "--unpaid-owners", *extra)
            if host == "pub2":  # the relay home1-1 asks for is up first
                procs.wait_http("pub1", f"{PUB2}/v1/status", name=host)
        yield procs


def ran_by(procs: LabProcesses, host: str, url: str) -> str:
    """The node that ran the sample when the lessee on `host` invoked it at `url`."""
    ran = json.loads(procs.python(host, INVOKE, ANCHOR, lessee_key(procs), str(SAMPLE), url))
    return str(ran[0]["node"])


def lessee_key(procs: LabProcesses) -> str:
    return str(procs.directory / "lessee.key")  # one lessee for the module: the function is deployed once


def wait_nodes(procs: LabProcesses, check: Callable[[dict[str, str]], bool], what: str) -> dict[str, str]:
    return wait_listed(procs, "home2-2", check, what)


def test_the_anchor_echoes_the_address_it_sees(network: LabProcesses) -> None:
    assert network.python("home1-2", WHOAMI, ANCHOR).strip() == "203.0.113.11"  # the router's
    assert network.python("pub2", WHOAMI, ANCHOR).strip() == "192.0.2.12"


def settled(nodes: dict[str, str]) -> bool:
    return len(nodes) == 3 and sum("/v1/relay/" in u for u in nodes.values()) == 2


def test_a_public_node_is_direct_and_nodes_behind_nat_are_relayed(network: LabProcesses) -> None:
    nodes = wait_nodes(network, settled, "three nodes listed, two of them relayed")
    urls = sorted(nodes.values())
    assert PUB2 in urls  # the public node, at the address the anchor saw, over TLS on its own key
    relayed = {node_id: url for node_id, url in nodes.items() if "/v1/relay/" in url}
    for node_id, url in relayed.items():
        assert url.endswith(relay_path(node_id))
        assert url.startswith((f"{PUB2}/", f"{ANCHOR}/"))  # a public node or the anchor
    # home1-1 asked for pub2 as its relay.
    assert f"relay {PUB2}" in network.tail("home1-1", 200)


def test_a_lessee_behind_nat_invokes_every_node_through_whatever_reaches_it(network: LabProcesses) -> None:
    nodes = wait_nodes(network, settled, "three nodes listed, two of them relayed")
    ran = json.loads(
        network.python("home2-2", INVOKE, ANCHOR, lessee_key(network), str(SAMPLE), *nodes.values())
    )
    assert [r["url"] for r in ran] == list(nodes.values())
    for r in ran:
        assert r["value"]["greeting"] == "hello lab" and r["value"]["sum"] == 3
    assert {r["node"] for r in ran} == set(nodes)  # each node ran the call it was given


def test_a_dead_relay_is_replaced_and_the_node_is_reached_again(network: LabProcesses) -> None:
    nodes = wait_nodes(network, settled, "three nodes listed, two of them relayed")
    home1 = next(i for i, u in nodes.items() if u.startswith(f"{PUB2}/v1/relay/"))
    network.kill("pub2")  # the relay of home1-1 dies without a word

    def moved(n: dict[str, str]) -> bool:
        return n.get(home1, "").startswith(f"{ANCHOR}/v1/relay/")

    nodes = wait_nodes(network, moved, "home1-1 relayed through the anchor")
    assert ran_by(network, "home2-2", nodes[home1]) == home1


def test_a_relayed_node_whose_router_gains_a_port_forward_goes_direct_and_back(
    lab: Lab, network: LabProcesses
) -> None:
    """The owner of home2 forwards port 8800 to home2-1: the node finds it is reachable directly,
    leaves its relay and is called directly; when the forward goes, it is relayed again."""
    nodes = wait_nodes(network, settled, "three nodes listed, two of them relayed")
    home2 = HOME2
    assert nodes[home2].endswith(relay_path(home2))
    router, wan = lab.host("router2").ns, lab.host("router2").public_address
    inside = lab.host("home2-1").address
    port = ("-i", "wan0", "-p", "tcp", "--dport", "8800")
    forward = ("PREROUTING", *port, "-j", "DNAT", "--to", f"{inside}:8800")
    allow = ("FORWARD", *port, "-d", inside, "-j", "ACCEPT")
    netns.iptables(router, "-I", *forward, table="nat")
    netns.iptables(router, "-I", *allow)
    try:

        def direct(n: dict[str, str]) -> bool:
            return n.get(home2, "").startswith(f"https://{wan}:8800/n/{home2}")

        nodes = wait_nodes(network, direct, "home2-1 listed at its router's forwarded port")
        assert ran_by(network, "home1-2", nodes[home2]) == home2
        assert "leaving the relay" in network.tail("home2-1", 200)
    finally:
        netns.iptables(router, "-D", *allow)
        netns.iptables(router, "-D", *forward, table="nat")

    def relayed_again(n: dict[str, str]) -> bool:
        return n.get(home2, "").endswith(relay_path(home2))

    wait_nodes(network, relayed_again, "home2-1 relayed again once the forward is gone")
