"""Run `ip` and `iptables` in Linux network namespaces: the lab's only contact with the kernel.

Each call is one subprocess with a timeout; a failing command raises `LabError` with its stderr. This
module does not know the lab's shape (`topology.py` does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from p2pfaas.errors import LocalError


class LabError(LocalError):
    """The lab could not be built, changed or removed (not root, a tool missing, a command failed)."""


TOOLS = ("ip", "iptables")


def unavailable() -> str | None:
    """Why a lab cannot be built on this machine, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (Debian: apt-get install iproute2 iptables)"
    return None


def run(argv: Sequence[str], *, timeout_s: float = 30.0, check: bool = True) -> str:
    """Run one command; its stdout, or `LabError` if it fails (when `check`)."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def in_ns(ns: str, *argv: str) -> list[str]:
    """The argv that runs `argv` inside namespace `ns` (the process keeps our files and users)."""
    return ["ip", "netns", "exec", ns, *argv]


def ip(ns: str, *args: str) -> str:
    return run(["ip", "-n", ns, *args])


def iptables(ns: str, *args: str, table: str = "filter", check: bool = True) -> str:
    return run(in_ns(ns, "iptables", "-w", "5", "-t", table, *args), check=check)


def sysctl(ns: str, name: str, value: str) -> None:
    run(in_ns(ns, "sysctl", "-q", "-w", f"{name}={value}"))


def namespaces() -> list[str]:
    """Names of every network namespace on the machine."""
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]


def add_namespace(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    ip(ns, "link", "set", "lo", "up")
    # Only the IPv4 TEST-NET plan exists in the lab: no IPv6 autoconfiguration chatter.
    sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
    sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")


def delete_namespace(ns: str) -> None:
    """Delete `ns`: its links (and the far ends of its veth pairs) and its iptables rules go with it."""
    run(["ip", "netns", "delete", ns], check=False)


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair made directly inside the two namespaces (never in the machine's own)."""
    run(["ip", "link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns", ns_b])


def bridge(ns: str, name: str) -> None:
    ip(ns, "link", "add", name, "type", "bridge")
    ip(ns, "link", "set", name, "up")


def attach(ns: str, link: str, bridge_name: str) -> None:
    ip(ns, "link", "set", link, "master", bridge_name)
    ip(ns, "link", "set", link, "up")


def address(ns: str, link: str, cidr: str) -> None:
    ip(ns, "address", "add", cidr, "dev", link)
    ip(ns, "link", "set", link, "up")


def default_route(ns: str, via: str) -> None:
    ip(ns, "route", "add", "default", "via", via)
