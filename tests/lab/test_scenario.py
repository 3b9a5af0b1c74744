"""The proofs again, off loopback: twelve nodes, half behind home NATs, lessees behind NAT, paying.

An anchor on pub1; six public nodes (pub2-pub7, TLS); six nodes behind three home routers whose WAN
addresses share one /24 (203.0.113.0/24), two per home (homeK-1, homeK-2), each relayed; a lessee
behind each of two routers (home1-3, home2-3). One lessee runs replicated calls of a deterministic
function, the other streams paid calls (a slot per node, so busy entry nodes forward); while the
stream goes on, a public node drains (SIGTERM), a node behind NAT is SIGKILLed and started again,
and one home router is cut off the internet and healed. Every call completes with the right value;
each lessee signed for exactly the results it used (the stream's, the replicas that won their vote),
every payment channel is then paid in full (by receipts, and by the anchor's rounds for what no
receipt claimed: a drained node's last ticket, a hedged call's copy) and the ledger's audit holds.
The figures (docs/benchmarks.md) print with `pytest -s`.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pfaas.identity import KeyPair
from p2pfaas.lab import Lab, LabSpec
from p2pfaas.lab.processes import LabProcesses, wait_for
from tests.lab.conftest import lab_or_skip
from tests.lab.labkit import ANCHOR, start_anchor, start_node, wait_listed

PUBLIC = [f"pub{n}" for n in range(2, 8)]
BEHIND = [f"home{k}-{m}" for k in (1, 2, 3) for m in (1, 2)]
KEYS = {host: KeyPair.from_seed(f"lab-scenario/{host}".encode()) for host in PUBLIC}
STREAM_CALLS = 240
REPLICATED_CALLS = 12

WORK = """import time
def handle(event):
    sum(range(20000))
    time.sleep(0.05)
    return {'i': event['i']}
"""
# Both functions hold memory for 50 ms, so each call has a price: free calls send no receipt.
SUM = "import time\ndef handle(event):\n    time.sleep(0.05)\n    return {'sum': sum(event)}\n"

# A paying lessee: a funded devnet wallet, CALLS calls of `work` with IN_FLIGHT at a time; a line per
# finished call in PROGRESS; prints {"ok": [[invocation id, entry node id, node id], ...], "failed": [...]}.
STREAM = """
import asyncio, json, sys
from pathlib import Path
from p2pfaas.client import AsyncClient
from p2pfaas.devnet.accounts import devnet_wallet
from p2pfaas.identity import KeyPair
async def main():
    anchor, state, key, fn, calls, in_flight, progress = sys.argv[1:]
    keys = KeyPair.load_or_create(Path(key))
    async with AsyncClient(anchor, keys) as client, devnet_wallet(anchor, Path(state), keys) as wallet:
        client.wallet = wallet
        await client.deploy(Path(fn))
        ok, failed, todo = [], [], list(range(int(calls)))
        with open(progress, "a") as log:
            async def worker():
                while todo:
                    i = todo.pop()
                    try:
                        out = await client.invoke("work", {"i": i})
                    except Exception as exc:
                        failed.append(f"{i}: {type(exc).__name__}: {exc}")
                    else:
                        if out.value != {"i": i}:
                            failed.append(f"{i}: wrong value {out.value!r}")
                        ok.append([out.invocation_id, out.entry_node_id, out.node_id])
                    log.write(f"{i}\\n"); log.flush()
            await asyncio.gather(*(worker() for _ in range(int(in_flight))))
        signed = [[v, n, seq, total] for (v, n), (seq, total) in client.signed_channels().items()]
    print(json.dumps({"ok": ok, "failed": failed, "signed": signed}))
asyncio.run(main())
"""

# A lessee that replicates: CALLS calls of the deterministic `sum` on two agreeing nodes of three.
REPLICATED = """
import asyncio, json, sys
from pathlib import Path
from p2pfaas.client import AsyncClient
from p2pfaas.client.replication import ReplicatedInvoker
from p2pfaas.devnet.accounts import devnet_wallet
from p2pfaas.identity import KeyPair
async def main():
    anchor, state, key, fn, calls = sys.argv[1:]
    keys = KeyPair.load_or_create(Path(key))
    async with AsyncClient(anchor, keys) as client, devnet_wallet(anchor, Path(state), keys) as wallet:
        client.wallet = wallet
        await client.deploy(Path(fn))
        invoker = ReplicatedInvoker(client, quorum=2, max_replicas=3, adaptive=False)
        ok, failed = [], []
        for i in range(int(calls)):
            try:
                got = await invoker.invoke("sum", [i, 1, 2])
            except Exception as exc:
                failed.append(f"{i}: {type(exc).__name__}: {exc}")
                continue
            if got.outcome.value != {"sum": i + 3}:
                failed.append(f"{i}: wrong value {got.outcome.value!r}")
            ok.append([got.outcome.invocation_id, sorted(got.agreeing), got.verdict is not None])
        signed = [[v, n, seq, total] for (v, n), (seq, total) in client.signed_channels().items()]
    print(json.dumps({"ok": ok, "failed": failed, "signed": signed}))
asyncio.run(main())
"""

AUDIT = """
import asyncio, json, sys
from p2pfaas.db import open_database
from p2pfaas.ledger.audit import audit
async def main():
    async with open_database(sys.argv[1]) as db:
        print(json.dumps(await audit(db)))
asyncio.run(main())
"""


def function(directory: Path, name: str, code: str, *, deterministic: bool = False) -> Path:
    path = directory / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "main.py").write_text(code)
    (path / "p2pfaas.toml").write_text(
        f'name = "{name}"\nversion = "1.0.0"\nruntime = "python3.11"\nhandler = "main:handle"\n'
        f"memory_mb = 64\ntimeout_s = 5\n" + ("deterministic = true\n" if deterministic else "")
    )
    return path


def start_paid_node(procs: LabProcesses, host: str) -> None:
    """One slot and a short queue (busy entry nodes forward), fast gossip, a bounded drain."""
    start_node(
        procs, host, "--slots", "1", "--queue-size", "2", "--gossip-period", "0.5", "--drain-deadline", "20"
    )


def url_of(host: str) -> str:
    number = int(host.removeprefix("pub"))
    return f"https://192.0.2.{10 + number}:8800/n/{KEYS[host].key_id}"


@pytest.fixture(scope="module")
def lab(lab_state_dir: Path) -> Iterator[Lab]:
    with lab_or_skip(LabSpec(public=7, homes=3, per_home=3), lab_state_dir) as built:
        yield built


@pytest.fixture(scope="module")
def network(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProcesses]:
    directory = tmp_path_factory.mktemp("lab-scenario")
    with LabProcesses(lab, directory) as procs:
        start_anchor(procs)
        for host in PUBLIC:
            KEYS[host].save(directory / host / "node.key")
            start_paid_node(procs, host)
        for host in PUBLIC:
            procs.wait_http("pub1", f"{url_of(host)}/v1/status", name=host)
        for host in BEHIND:
            start_paid_node(procs, host)
        yield procs


def all_joined(nodes: dict[str, str]) -> bool:
    return len(nodes) == 12 and sum("/v1/relay/" in u for u in nodes.values()) == 6


def progress(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


def unpaid(db: Path, wanted: dict[tuple[str, str], int]) -> list[tuple[tuple[str, str], int, int]]:
    """The channels whose anchor row has not paid the total the lessee signed: (channel, signed, paid)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT voucher_id, node_id, paid_micro FROM channels").fetchall()
    paid = {(voucher_id, node_id): int(micro) for voucher_id, node_id, micro in rows}
    return [
        (key, total, paid.get(key, 0)) for key, total in sorted(wanted.items()) if paid.get(key, 0) != total
    ]


def settlement_rows(db: Path) -> tuple[int, int]:
    """How many settlements paid receipts, and how many paid channels' rests (`p2pfaas.ledger.rounds`)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT invocation_id FROM settlements")]
    rests = sum(invocation_id.startswith("ch:") for invocation_id in ids)
    return len(ids) - rests, rests


# Its own bound, above the sum of its phases' (each waits with its own timeout and message): the
# default 300 s would cut a slow machine's run short in the middle, with no word on what was slow.
@pytest.mark.timeout(1200)
def test_twelve_nodes_pay_replicate_forward_and_survive_drain_kill_and_a_partition(
    lab: Lab, network: LabProcesses
) -> None:
    procs, directory = network, network.directory
    began = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - began - sum(phases.values()), 1)

    nodes = wait_listed(procs, "home2-3", all_joined, "twelve nodes listed, the six behind NAT relayed")
    work = function(directory / "fn", "work", WORK)
    summed = function(directory / "fn", "sum", SUM, deterministic=True)
    # Replication first, in a steady network: a replica that times out counts against the cap (it may
    # have run, and billed), so under faults a vote can end ReplicationInconclusive, a typed error.
    replicated = procs.python_background(
        "home2-3", "replicated", REPLICATED, ANCHOR, str(directory), str(directory / "lessee-b.key"),
        str(summed), str(REPLICATED_CALLS),
    )  # fmt: skip
    assert replicated.wait(timeout=600) == 0, procs.tail("replicated")
    phase("replicated")
    stream_progress = directory / "stream.progress"
    stream = procs.python_background(
        "home1-3", "stream", STREAM, ANCHOR, str(directory), str(directory / "lessee-a.key"), str(work),
        str(STREAM_CALLS), "6", str(stream_progress),
    )  # fmt: skip
    wait_for(lambda: progress(stream_progress) >= 20, timeout_s=180, what="20 paid calls")
    done = progress(stream_progress)
    assert done < STREAM_CALLS - 150, "the stream finished before the faults"
    procs.signal("pub3", signal.SIGTERM)  # a volunteer stops its node: it drains
    wait_for(lambda: progress(stream_progress) >= done + 30, timeout_s=180, what="30 more paid calls")
    procs.kill("home1-1")  # a node behind NAT dies without a word, and comes back
    lab.cut("router3")  # a whole home goes dark
    wait_for(lambda: progress(stream_progress) >= done + 90, timeout_s=180, what="90 more paid calls")
    start_paid_node(procs, "home1-1")
    lab.heal("router3")

    assert stream.wait(timeout=600) == 0, procs.tail("stream")
    phase("stream under faults")
    assert procs.stop("pub3", grace_s=30) == 0  # the drain finished cleanly
    streamed = json.loads(procs.tail("stream", 1))
    replicas = json.loads(procs.tail("replicated", 1))
    # Every call completed, with its own value: the share completed is 100%.
    assert streamed["failed"] == [] and len(streamed["ok"]) == STREAM_CALLS
    assert replicas["failed"] == [] and len(replicas["ok"]) == REPLICATED_CALLS
    assert all(len(agreeing) >= 2 and verdict for _, agreeing, verdict in replicas["ok"])
    forwarded = [1 for _, entry, ran in streamed["ok"] if entry != ran]
    assert forwarded, "no busy entry node forwarded a call"
    ran_behind_nat = {ran for _, _, ran in streamed["ok"] if "/v1/relay/" in nodes.get(ran, "")}
    assert ran_behind_nat, "no call ran on a node behind NAT"

    # The healed home's nodes are relayed and reachable again; the restarted node too.
    wait_listed(procs, "home2-3", all_joined_but_drained, "eleven nodes listed after the heal", timeout_s=180)
    phase("healed")

    # Each lessee signed for exactly the results it used, on the node that ran each.
    signed = streamed["signed"] + replicas["signed"]
    used = Counter(ran for _, _, ran in streamed["ok"]) + Counter(
        n for _, ns, _ in replicas["ok"] for n in ns
    )
    calls_signed: Counter[str] = Counter()
    for _, node_id, seq, _ in signed:
        calls_signed[node_id] += seq
    assert calls_signed == used, f"signed for {calls_signed}, used {used}"
    # Every channel is paid what its lessee signed, and the books balance.
    db = directory / "anchor.db"
    wanted = {(voucher_id, node_id): total for voucher_id, node_id, _, total in signed}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and unpaid(db, wanted):
        time.sleep(2)
    phase("settled")
    owed = unpaid(db, wanted)
    assert not owed, (
        f"{len(owed)} channels not paid what their lessee signed ({phases} s): {owed[:5]}\n"
        + why_unpaid(directory, {node_id for (_, node_id), _, _ in owed[:3]})
    )
    assert json.loads(procs.python("pub1", AUDIT, f"sqlite+aiosqlite:///{db}")) == []
    by_receipt, by_round = settlement_rows(db)
    behind_nat = sum(ran in ran_behind_nat for _, _, ran in streamed["ok"])
    print(
        f"\nlab scenario: {len(streamed['ok'])}/{STREAM_CALLS} paid calls completed (100%), "
        f"{len(forwarded)} forwarded, {behind_nat} ran behind "
        f"NAT; {len(replicas['ok'])}/{REPLICATED_CALLS} replicated calls agreed; {len(wanted)} channels "
        f"paid in full, by {by_receipt} receipts and {by_round} rounds' rests; ledger audit clean; "
        f"phases (s): {phases}"
    )


def why_unpaid(directory: Path, node_ids: set[str]) -> str:
    """What the logs and the ledger say of channels left unpaid (for the failure message)."""
    lines = []
    for log in sorted(directory.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if any(n[:12] in line for n in node_ids) or "channel" in line or "unsigned" in line:
                lines.append(f"{log.stem}: {line[:300]}")
    with sqlite3.connect(f"file:{directory / 'anchor.db'}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT voucher_id, node_id, seq, signed_micro, paid_micro FROM channels"
        ).fetchall()
    lines += [f"channel {row}" for row in rows if row[1] in node_ids]
    return "\n".join(lines[-60:])


def all_joined_but_drained(nodes: dict[str, str]) -> bool:
    drained = url_of("pub3")
    return (
        len(nodes) == 11
        and drained not in nodes.values()
        and sum("/v1/relay/" in u for u in nodes.values()) == 6
    )
