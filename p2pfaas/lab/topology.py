"""A lab's shape: "the internet", public hosts, home routers doing NAT, and the hosts behind them.

    internet (namespace p2l-T-inet): bridge inet0, router between 192.0.2.0/24 and 203.0.113.0/24
      pubN      192.0.2.(10+N)        a host with a public address (a data centre /24: all share it)
      routerK   203.0.113.(10+K)      a home router: MASQUERADE out of wan0, no port forwarding, new
                                      inbound connections dropped; every home's LAN is 198.51.100.0/24
        homeK-M 198.51.100.(10+M)     a host behind routerK; the internet sees it as routerK's address

Every router's WAN address is in 203.0.113.0/24, so the homes are also "many NATs in one /24".
Nothing is added to the machine's own namespace: there is no route out, so no lab packet can leave.
`cut(name)` drops everything on a host's uplink (a public host's eth0, a router's wan0: its whole
home) and `heal(name)` restores it. A lab is recorded in a state file under `state_dir` so that
`p2pfaas lab down` and `remove_stale` can remove it after its creator is gone.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

from p2pfaas.lab import netns
from p2pfaas.lab.netns import LabError
from p2pfaas.lifecycle import process_alive

PREFIX = "p2l"
STATE_DIR = Path(os.environ.get("P2PFAAS_LAB_STATE", "/run/p2pfaas-lab"))
PUBLIC_NET, PUBLIC_GW = "192.0.2", "192.0.2.1"
WAN_NET, WAN_GW = "203.0.113", "203.0.113.1"
LAN_NET, LAN_GW = "198.51.100", "198.51.100.1"
CUT_CHAIN = "P2L-CUT"

__all__ = ["Host", "Lab", "LabError", "LabSpec"]


@dataclass(frozen=True)
class LabSpec:
    public: int = 3  # hosts with a public address
    homes: int = 2  # home routers
    per_home: int = 2  # hosts behind each router

    def __post_init__(self) -> None:
        if not (0 <= self.public <= 200 and 0 <= self.homes <= 200 and 0 <= self.per_home <= 200):
            raise LabError("a lab has 0..200 public hosts, homes and hosts per home")


@dataclass(frozen=True)
class Host:
    """One machine of the lab: its namespace, its own address and the address the internet sees."""

    name: str
    ns: str
    address: str
    public_address: str
    router: str | None = None  # the home router's name for a host behind NAT
    uplink: str = "eth0"  # the link `cut` drops

    @property
    def behind_nat(self) -> bool:
        return self.router is not None

    def argv(self, *command: str) -> list[str]:
        """The argv that runs `command` on this host."""
        return netns.in_ns(self.ns, *command)

    def run(self, *command: str, timeout_s: float = 30.0, check: bool = True) -> str:
        return netns.run(self.argv(*command), timeout_s=timeout_s, check=check)


@dataclass
class Lab:
    """A built lab. `with Lab.build(spec) as lab:` removes it on leaving, also after a failure."""

    token: str
    hosts: dict[str, Host] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    owner_pid: int | None = None  # a lab whose owner died is stale; None: kept until `lab down`
    state_dir: Path = STATE_DIR

    # -- building -------------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        spec: LabSpec,
        *,
        token: str | None = None,
        owner_pid: int | None = None,
        state_dir: Path = STATE_DIR,
    ) -> Lab:
        reason = netns.unavailable()
        if reason is not None:
            raise LabError(f"no network lab here: {reason}")
        lab = cls(token=token or secrets.token_hex(3), owner_pid=owner_pid, state_dir=state_dir)
        if any(ns.startswith(lab._prefix) for ns in netns.namespaces()):
            raise LabError(f"a lab {lab.token} exists already (p2pfaas lab down --token {lab.token})")
        try:
            lab._build(spec)
        except BaseException:
            lab.destroy()
            raise
        return lab

    @property
    def _prefix(self) -> str:
        return f"{PREFIX}-{self.token}-"

    def _namespace(self, role: str) -> str:
        ns = self._prefix + role
        self.namespaces.append(ns)
        self.save()  # before it exists: a crash half way still leaves a record to remove it by
        netns.add_namespace(ns)
        return ns

    def _build(self, spec: LabSpec) -> None:
        inet = self._namespace("inet")
        netns.bridge(inet, "inet0")
        netns.address(inet, "inet0", f"{PUBLIC_GW}/24")
        netns.address(inet, "inet0", f"{WAN_GW}/24")
        netns.sysctl(inet, "net.ipv4.ip_forward", "1")
        for n in range(1, spec.public + 1):
            name, addr = f"pub{n}", f"{PUBLIC_NET}.{10 + n}"
            ns = self._namespace(name)
            netns.veth(ns, "eth0", inet, f"p{n}")
            netns.attach(inet, f"p{n}", "inet0")
            netns.address(ns, "eth0", f"{addr}/24")
            netns.default_route(ns, PUBLIC_GW)
            self.hosts[name] = Host(name, ns, addr, addr)
        for k in range(1, spec.homes + 1):
            router, wan = f"router{k}", f"{WAN_NET}.{10 + k}"
            rns = self._namespace(router)
            netns.veth(rns, "wan0", inet, f"r{k}")
            netns.attach(inet, f"r{k}", "inet0")
            netns.address(rns, "wan0", f"{wan}/24")
            netns.default_route(rns, WAN_GW)
            netns.bridge(rns, "lan0")
            netns.address(rns, "lan0", f"{LAN_GW}/24")
            netns.sysctl(rns, "net.ipv4.ip_forward", "1")
            # A home router: outbound connections leave as the WAN address, replies come back, nothing
            # new comes in (no port forwarding, no UPnP).
            netns.iptables(rns, "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE", table="nat")
            netns.iptables(
                rns, "-A", "FORWARD", "-i", "wan0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                "-j", "ACCEPT",
            )  # fmt: skip
            netns.iptables(rns, "-A", "FORWARD", "-i", "wan0", "-j", "DROP")
            netns.iptables(
                rns, "-A", "INPUT", "-i", "wan0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                "-j", "ACCEPT",
            )  # fmt: skip
            netns.iptables(rns, "-A", "INPUT", "-i", "wan0", "-j", "DROP")
            self.hosts[router] = Host(router, rns, wan, wan, uplink="wan0")
            for m in range(1, spec.per_home + 1):
                name, addr = f"home{k}-{m}", f"{LAN_NET}.{10 + m}"
                ns = self._namespace(name)
                netns.veth(ns, "eth0", rns, f"h{m}")
                netns.attach(rns, f"h{m}", "lan0")
                netns.address(ns, "eth0", f"{addr}/24")
                netns.default_route(ns, LAN_GW)
                self.hosts[name] = Host(name, ns, addr, wan, router=router)
        self.save()

    # -- faults ---------------------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise LabError(f"no host {name!r} in lab {self.token} (hosts: {', '.join(self.hosts)})") from None

    def cut(self, name: str) -> None:
        """Drop every packet on `name`'s uplink, both ways (a router: its whole home goes dark)."""
        host = self.host(name)
        if netns.iptables(host.ns, "-L", CUT_CHAIN, "-n", check=False) == "":
            netns.iptables(host.ns, "-N", CUT_CHAIN)
            for chain in ("INPUT", "OUTPUT", "FORWARD"):
                netns.iptables(host.ns, "-I", chain, "1", "-j", CUT_CHAIN)
        netns.iptables(host.ns, "-F", CUT_CHAIN)
        netns.iptables(host.ns, "-A", CUT_CHAIN, "-i", host.uplink, "-j", "DROP")
        netns.iptables(host.ns, "-A", CUT_CHAIN, "-o", host.uplink, "-j", "DROP")

    def heal(self, name: str) -> None:
        host = self.host(name)
        netns.iptables(host.ns, "-F", CUT_CHAIN, check=False)

    # -- removing -------------------------------------------------------------------------------------------
    def destroy(self) -> None:
        """Delete every namespace this lab made (their links and rules go with them) and its record."""
        for ns in reversed(self.namespaces):
            netns.delete_namespace(ns)
        left = [ns for ns in netns.namespaces() if ns.startswith(self._prefix)]
        for ns in left:  # made by a crashed build before its record was written
            netns.delete_namespace(ns)
        self.state_path.unlink(missing_ok=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()

    # -- the state file -------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.state_dir / f"{self.token}.json"

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "token": self.token,
            "owner_pid": self.owner_pid,
            "namespaces": self.namespaces,
            "hosts": {name: asdict(host) for name, host in self.hosts.items()},
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_path)

    @classmethod
    def load(cls, token: str, *, state_dir: Path = STATE_DIR) -> Lab:
        path = state_dir / f"{token}.json"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"no lab {token} recorded in {state_dir}: {exc}") from exc
        return cls(
            token=state["token"],
            hosts={name: Host(**host) for name, host in state["hosts"].items()},
            namespaces=list(state["namespaces"]),
            owner_pid=state["owner_pid"],
            state_dir=state_dir,
        )

    @classmethod
    def recorded(cls, *, state_dir: Path = STATE_DIR) -> list[Lab]:
        if not state_dir.is_dir():
            return []
        return [cls.load(path.stem, state_dir=state_dir) for path in sorted(state_dir.glob("*.json"))]


def remove_stale(*, state_dir: Path = STATE_DIR) -> list[str]:
    """Remove the labs whose owning process has died (a test run that was killed); their tokens."""
    removed = []
    for lab in Lab.recorded(state_dir=state_dir):
        if lab.owner_pid is not None and not process_alive(lab.owner_pid):
            lab.destroy()
            removed.append(lab.token)
    return removed
