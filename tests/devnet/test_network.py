"""A local network of processes (`p2pfaas.devnet.network`), without starting one: what `up` and `down`
refuse, and stopping processes by their ids. The whole devnet: tests/lab and `p2pfaas devnet up`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pfaas.devnet.network import _stop, down, up
from p2pfaas.errors import LocalError


def test_down_without_a_devnet_and_up_with_too_many_nodes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LocalError, match="no devnet state"):
        down(tmp_path)
    for nodes in (0, 65):
        with pytest.raises(LocalError, match="--nodes must be between 1 and 64"):
            up(tmp_path, nodes=nodes, port=0, detach=True)


def running(pid: int) -> bool:
    """Whether `pid` still runs: a zombie (killed, not reaped yet) does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_stop_ends_each_process_by_its_id_and_kills_what_lingers() -> None:
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
            "time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"1\n"  # its handler is set
    try:
        _stop([polite.pid, stubborn.pid], grace_s=0.5)
        deadline = time.monotonic() + 30  # a SIGKILL lands a moment after it is sent (a bound, not a speed)
        while running(stubborn.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not running(polite.pid) and not running(stubborn.pid)
    finally:
        for process in (polite, stubborn):
            process.kill()
            process.wait()
        stubborn.stdout.close()
