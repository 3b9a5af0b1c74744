"""The wire is untrusted: what a tap on "the internet" sees, and what a peer at a stolen address gets.

tcpdump listens on the lab's internet bridge while a lessee behind NAT invokes a node over TLS with a
distinctive payload (it must not appear on the wire), and the same call to a node run with
`--tls off` (it must: the control that shows the capture sees application bytes). A node behind
another NAT, relayed by the anchor over plain HTTP, is called the same way: the relay's hops carry
only the TLS tunnel to the node, so neither the wire nor the relay sees the payload. A router that
steers the lessee's connection to another node (DNAT) gets nothing: that node cannot prove the key.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pfaas.identity import KeyPair
from p2pfaas.lab import Lab, LabSpec, netns
from p2pfaas.lab.processes import LabProcesses
from p2pfaas.relay import relay_path
from tests.lab.conftest import lab_or_skip
from tests.lab.labkit import ANCHOR, start_anchor, start_node, wait_listed

TLS_KEY = KeyPair.from_seed(b"lab-wire/tls")
TLS_NODE = f"https://192.0.2.12:8800/n/{TLS_KEY.key_id}"
PLAIN_NODE = "http://192.0.2.13:8800"
RELAYED_KEY = KeyPair.from_seed(b"lab-wire/relayed")
RELAYED_NODE = f"{ANCHOR}{relay_path(RELAYED_KEY.key_id)}"  # the anchor relays it, in plain HTTP
SAMPLE = Path(__file__).parents[2] / "p2pfaas" / "sample" / "hello"

# Invokes the sample at each URL with `name`; prints, per URL, the greeting or the error's class.
INVOKE = """
import asyncio, json, sys
from pathlib import Path
from p2pfaas.client import AsyncClient
from p2pfaas.identity import KeyPair
async def main():
    anchor, key, sample, name, *urls = sys.argv[1:]
    async with AsyncClient(anchor, KeyPair.load_or_create(Path(key))) as client:
        await client.deploy(Path(sample))
        out = {}
        for url in urls:
            try:
                got = await client.invoke("hello", {"name": name}, node_url=url)
                out[url] = got.value["greeting"]
            except Exception as exc:
                out[url] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(out))
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def lab(lab_state_dir: Path) -> Iterator[Lab]:
    with lab_or_skip(LabSpec(public=4, homes=2, per_home=1), lab_state_dir) as built:
        yield built


@pytest.fixture(scope="module")
def network(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProcesses]:
    """An anchor on pub1, a TLS node on pub2, a plain-HTTP node on pub3, another TLS node on pub4, and
    a node behind home2's NAT relayed by the anchor."""
    directory = tmp_path_factory.mktemp("lab-wire")
    with LabProcesses(lab, directory) as procs:
        start_anchor(procs)
        TLS_KEY.save(directory / "pub2" / "node.key")
        RELAYED_KEY.save(directory / "home2-1" / "node.key")
        nodes = (("pub2", ()), ("pub3", ("--tls", "off")), ("pub4", ()), ("home2-1", ("--relay", ANCHOR)))
        for host, extra in nodes:
            start_node(procs, host, "--unpaid-owners", *extra)
        procs.wait_http("pub1", f"{TLS_NODE}/v1/status", name="pub2")
        procs.wait_http("pub1", f"{PLAIN_NODE}/v1/status", name="pub3")
        wait_listed(procs, "pub1", lambda n: n.get(RELAYED_KEY.key_id) == RELAYED_NODE, "home2-1 relayed")
        yield procs


def capture(lab: Lab, pcap: Path) -> subprocess.Popen[bytes]:
    """tcpdump on the internet bridge: every packet between routers and public hosts, whole."""
    inet = next(ns for ns in lab.namespaces if ns.endswith("-inet"))
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            inet,
            "tcpdump",
            "--immediate-mode",
            "-i",
            "inet0",
            "-U",
            "-s",
            "0",
            "-w",
            str(pcap),
            "tcp",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline().decode(errors="replace")  # "listening on inet0 ...": it is capturing
    assert "listening on" in line, line
    return proc


def stop_capture(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # tcpdump flushes and exits
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()


def test_a_tap_on_the_wire_sees_no_payload_sent_over_tls(lab: Lab, network: LabProcesses) -> None:
    pcap = network.directory / "wire.pcap"
    secret = f"tls-{secrets.token_hex(8)}"
    before, after = f"plain-{secrets.token_hex(8)}", f"plain-{secrets.token_hex(8)}"
    key = str(network.directory / "lessee.key")

    def invoke(name: str, url: str) -> object:
        return json.loads(network.python("home1-1", INVOKE, ANCHOR, key, str(SAMPLE), name, url))

    relayed = f"relayed-{secrets.token_hex(8)}"
    tap = capture(lab, pcap)
    try:  # the TLS calls between two in the clear: the tap was seeing application bytes all along
        ran = [
            invoke(before, PLAIN_NODE),
            invoke(secret, TLS_NODE),
            invoke(relayed, RELAYED_NODE),
            invoke(after, PLAIN_NODE),
        ]
    finally:
        stop_capture(tap)
    assert ran == [
        {PLAIN_NODE: f"hello {before}"},
        {TLS_NODE: f"hello {secret}"},
        {RELAYED_NODE: f"hello {relayed}"},
        {PLAIN_NODE: f"hello {after}"},
    ]
    wire = pcap.read_bytes()
    assert before.encode() in wire and after.encode() in wire  # the tap sees payloads in the clear...
    assert secret.encode() not in wire  # ...and none of the call (nor its answer) that went over TLS,
    assert relayed.encode() not in wire  # nor of the one through a relay speaking plain HTTP
    assert f"/v1/tunnel/{RELAYED_KEY.key_id}".encode() in wire  # (which did carry it: the tunnel's path)


def test_a_router_that_steers_a_call_to_another_host_gets_nothing(lab: Lab, network: LabProcesses) -> None:
    """A hostile home router (or ISP) rewrites the lessee's connections to the TLS node's address
    towards a host it controls, which runs a node of its own: the pin refuses it before a byte."""
    key = str(network.directory / "lessee.key")
    router = lab.host("router1").ns
    steer = (
        "PREROUTING",
        "-p",
        "tcp",
        "-d",
        "192.0.2.12",
        "--dport",
        "8800",
        "-j",
        "DNAT",
        "--to",
        "192.0.2.14:8800",
    )
    netns.iptables(router, "-I", *steer, table="nat")
    try:
        got = json.loads(network.python("home1-1", INVOKE, ANCHOR, key, str(SAMPLE), "mitm", TLS_NODE))
    finally:
        netns.iptables(router, "-D", *steer, table="nat")
    assert f"could not prove it is node {TLS_KEY.key_id}; nothing was sent" in got[TLS_NODE], got
    healed = json.loads(network.python("home1-1", INVOKE, ANCHOR, key, str(SAMPLE), "mitm", TLS_NODE))
    assert healed == {TLS_NODE: "hello mitm"}  # new connections reach the real node again
