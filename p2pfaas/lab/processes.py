"""Processes on the lab's hosts: start `p2pfaas` commands and Python snippets there, wait, stop.

`LabProcesses` remembers every process it started and ends each by its own id (SIGTERM, then SIGKILL
after a grace period); leaving its context stops them all, also after a failure. Logs go to
`directory/NAME.log`. Waiting for a URL polls it from inside the host (the test process itself is
not in any lab namespace and cannot reach lab addresses).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from p2pfaas.lab.netns import LabError
from p2pfaas.lab.topology import Lab

# A readiness probe only: an https URL is not verified here (callers pin identities where it matters).
_WAIT_HTTP = """
import ssl, sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2, context=context) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
"""


class LabProcesses:
    """`with LabProcesses(lab, directory) as procs: procs.p2pfaas("pub1", "anchor", "anchor", "serve")`."""

    def __init__(self, lab: Lab, directory: Path) -> None:
        self.lab = lab
        self.directory = directory
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def p2pfaas(
        self, host: str, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `p2pfaas ARGS` on `host` as process `name` (its log: `directory/NAME.log`)."""
        return self.start(host, name, [sys.executable, "-m", "p2pfaas", *args], env=env)

    def python_background(self, host: str, name: str, code: str, *args: str) -> subprocess.Popen[bytes]:
        """Start a Python snippet on `host` as process `name`, logged like the others."""
        return self.start(host, name, [sys.executable, "-c", code, *args])

    def start(
        self, host: str, name: str, argv: list[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        if name in self.procs and self.procs[name].poll() is None:
            raise LabError(f"a process named {name} is running already")
        with self.log_path(name).open("ab") as out:
            proc = subprocess.Popen(
                self.lab.host(host).argv(*argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        self.procs[name] = proc
        return proc

    def python(self, host: str, code: str, *args: str, timeout_s: float = 120.0) -> str:
        """Run a Python snippet on `host`; its stdout, or LabError with its output if it fails."""
        argv = self.lab.host(host).argv(sys.executable, "-c", code, *args)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"a snippet on {host} ran over {timeout_s:.0f} s: {exc.stderr!r}") from None
        if done.returncode != 0:
            raise LabError(f"a snippet on {host} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def wait_http(self, host: str, url: str, *, name: str, timeout_s: float = 60.0) -> None:
        """Until `url` answers 200 from `host`; LabError with the log's tail if `name` exits first."""
        argv = self.lab.host(host).argv(sys.executable, "-c", _WAIT_HTTP, url, str(timeout_s))
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s + 30, check=False)
        proc = self.procs[name]
        if done.returncode != 0 or proc.poll() is not None:
            raise LabError(
                f"{url} did not answer from {host} (process {name}: {proc.poll()}):\n{self.tail(name)}"
            )

    def log_path(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def signal(self, name: str, sig: signal.Signals) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)

    def stop(self, name: str, *, grace_s: float = 15.0) -> int | None:
        """SIGTERM `name`, then SIGKILL if it lingers past `grace_s`; its exit status."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self.stop(name, grace_s=10.0)

    def __enter__(self) -> LabProcesses:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()


def wait_for(predicate: object, *, timeout_s: float, what: str, every_s: float = 0.5) -> None:
    """Until `predicate()` is true (polled), else LabError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(every_s)
    raise LabError(f"not within {timeout_s:.0f} s: {what}")
