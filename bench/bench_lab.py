"""Off loopback, in the network lab (issue #12): a warm invocation in plain HTTP, over TLS, and relayed.

Builds a lab (needs root: p2pfaas/lab): an anchor on pub1, a node on pub2 (public, TLS, announced
directly), a relaying node on pub3 (TLS), the same node with `--tls off` on pub4, and a node behind a
home NAT on home1-1, which finds itself unreachable and is relayed by pub3 (`--relay`). The lessee
runs on home2-1, behind another NAT router, like most lessees. Paths:

- plain:   lessee -> NAT -> pub4's node, plain HTTP (the baseline)
- tls:     lessee -> NAT -> pub2's node, TLS 1.3 pinned to its identity
- relayed: lessee -> NAT -> pub3's relay (TLS) -> (WebSocket) -> NAT -> home1-1's node, with TLS from
           the lessee to the node inside (p2pfaas/tunnel.py): the relay reads nothing

It prints p50/p90/p99 per path, the added latency and ratio against the plain path measured in the
same run, and throughput at a fixed concurrency. Functions run with the process executor: the
executor is the same on both paths and not what is measured here. A benchmark, not a test.

    .venv/bin/python -m bench.bench_lab [--n 500] [--concurrent 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.bench_invoke import percentile
from p2pfaas.identity import KeyPair
from p2pfaas.lab import Lab, LabSpec
from p2pfaas.lab.processes import LabProcesses, wait_for

ANCHOR = "http://192.0.2.11:8700"
KEYS = {name: KeyPair.from_seed(f"bench-lab/{name}".encode()) for name in ("node", "relay")}
NODE = f"https://192.0.2.12:8800/n/{KEYS['node'].key_id}"
RELAY = f"https://192.0.2.13:8800/n/{KEYS['relay'].key_id}"
PLAIN = "http://192.0.2.14:8800"
HANDLER = "def handle(e):\n    return e\n"


def node_args(directory: Path, name: str, port: int = 8800, *extra: str) -> list[str]:
    return [
        "node", "run", "--anchor", ANCHOR, "--host", "0.0.0.0", "--port", str(port), "--dht-port", str(port),
        "--peer", "192.0.2.11:8700", "--work-dir", str(directory / name), "--executor", "process",
        "--allow-unsandboxed", "--unpaid-owners", "--slots", "16", *extra,
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=500, help="sequential calls per path")
    parser.add_argument("--concurrent", type=int, default=16, help="calls in flight for the throughput row")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2pfaas-bench-lab-") as tmp:
        directory = Path(tmp)
        function = directory / "noop"
        function.mkdir()
        (function / "main.py").write_text(HANDLER)
        (function / "p2pfaas.toml").write_text(
            'name = "noop"\nversion = "1.0.0"\nruntime = "python3.11"\nhandler = "main:handle"\n'
        )
        with (
            Lab.build(LabSpec(public=4, homes=2, per_home=1)) as lab,
            LabProcesses(lab, directory / "logs") as procs,
        ):
            db = f"sqlite+aiosqlite:///{directory / 'anchor.db'}"
            procs.p2pfaas(
                "pub1", "anchor", "anchor", "serve", "--host", "0.0.0.0", "--port", "8700", "--db", db,
                "--dht-port", "8700", "--public-url", ANCHOR,
            )  # fmt: skip
            procs.wait_http("pub1", f"{ANCHOR}/v1/health", name="anchor")
            for name, keys in KEYS.items():  # known keys: their HTTPS URLs name them
                keys.save(directory / name / "node.key")
            procs.p2pfaas("pub2", "node", *node_args(directory, "node"))
            procs.p2pfaas("pub3", "relay", *node_args(directory, "relay"))
            procs.p2pfaas("pub4", "plain", *node_args(directory, "plain", 8800, "--tls", "off"))
            for name, url in (("node", NODE), ("relay", RELAY), ("plain", PLAIN)):
                procs.wait_http("pub1", f"{url}/v1/status", name=name)
            # The relay offers itself once the anchor has dialled it back (it is then DIRECT).
            wait_for(
                lambda: "reachable directly" in procs.tail("relay", 100), timeout_s=60, what="relay direct"
            )
            procs.p2pfaas("home1-1", "behind", *node_args(directory, "behind", 8800, "--relay", RELAY))

            def relayed_url() -> str:
                return next((u for u in listed(procs) if u.startswith(f"{RELAY}/v1/relay/")), "")

            wait_for(lambda: bool(relayed_url()), timeout_s=90, what="the node behind NAT listed, relayed")
            relayed = relayed_url()
            out = procs.python(
                "home2-1", PROBE, ANCHOR, str(directory / "lessee.key"), str(function), str(opts.n),
                str(opts.concurrent), PLAIN, NODE, relayed, timeout_s=1800,
            )  # fmt: skip
    results = json.loads(out.strip().splitlines()[-1])
    print_table({"plain": results[PLAIN], "tls": results[NODE], "relayed": results[relayed]}, opts)
    return 0


LIST = """
import sys, urllib.request
from p2pfaas import codec
from p2pfaas.messages import NodeList
with urllib.request.urlopen(sys.argv[1] + "/v1/nodes", timeout=5) as r:
    print(" ".join(n.url for n in codec.decode_as(NodeList, r.read()).nodes))
"""


def listed(procs: LabProcesses) -> list[str]:
    return procs.python("pub1", LIST, ANCHOR).split()


PROBE = (
    "import runpy, sys; sys.argv[0] = 'lab_probe'; runpy.run_module('bench.lab_probe', run_name='__main__')"
)


def print_table(paths: dict[str, dict[str, object]], opts: argparse.Namespace) -> None:
    plain = sorted(paths["plain"]["samples_s"])  # type: ignore[call-overload]
    base = statistics.median(plain)
    print(f"warm no-op invocation, lessee behind NAT, n={opts.n} per path, interleaved")
    print(
        f"{'path':<10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'x plain':>9} {'inv/s':>8}"
    )
    for label, data in paths.items():
        s = sorted(data["samples_s"])  # type: ignore[call-overload]
        p50 = statistics.median(s)
        p90, p99 = percentile(s, 0.9), percentile(s, 0.99)
        print(
            f"{label:<10} {p50 * 1e3:>8.3f} {p90 * 1e3:>8.3f} {p99 * 1e3:>8.3f} "
            f"{(p50 - base) * 1e3:>+8.3f} {p50 / base:>9.2f} {data['per_s']:>8.0f}"
        )
    print(f"throughput: {opts.concurrent} calls in flight, {opts.concurrent * 25} calls per path")


if __name__ == "__main__":
    sys.exit(main())
