"""The lab's commands (`p2pfaas.lab.netns`), without building a lab: commands run or fail with their
error, and a namespace's command line. Namespaces themselves: the lab tests (root)."""

from __future__ import annotations

import sys

import pytest

from p2pfaas.lab.netns import LabError, in_ns, run, unavailable


def test_a_command_gives_its_output_or_a_lab_error_naming_it() -> None:
    assert run([sys.executable, "-c", "print('out')"]) == "out\n"
    with pytest.raises(LabError, match=r"exit 3: err"):
        run([sys.executable, "-c", "import sys; sys.stderr.write('err'); sys.exit(3)"])
    assert run([sys.executable, "-c", "import sys; sys.exit(3)"], check=False) == ""
    with pytest.raises(LabError, match="no-such-tool-anywhere"):
        run(["no-such-tool-anywhere"])
    with pytest.raises(LabError):
        run([sys.executable, "-c", "import time; time.sleep(5)"], timeout_s=0.1)


def test_a_namespaces_command_runs_under_ip_netns_exec() -> None:
    assert in_ns("home1", "sysctl", "-q") == ["ip", "netns", "exec", "home1", "sysctl", "-q"]
    reason = unavailable()
    assert reason is None or "root" in reason or "missing" in reason
