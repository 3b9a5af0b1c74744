"""A node's resource settings: from `NodeConfig` to the service's admission and prices, and from a
TOML config file (`p2pfaas node run --config FILE`) to `NodeConfig` fields.

A config file holds what a volunteer lends and charges; command-line options override it:

    cpus = 1.5
    memory = "4g"          # or memory_mb = 4096
    slots = 8
    queue_size = 32
    price_per_cpu_s_micro = 20
    price_per_gb_s_micro = 2
    bundle_cache_mb = 1024
    layer_cache_mb = 4096  # unpacked dependency layers (numpy and friends), least recently used go
    max_layer_mb = 1024    # a function whose wheels are larger is refused here
    workers = 2            # processes serving invocations on one port (at most one per core)
    unpaid_keys = ["3f2a..."]  # lessee key ids that may run here without paying (default: none)
    unpaid_owners = false  # a function's owner may run it unpaid (a devnet; default false)
    callback_allow = ["127.0.0.0/8"]   # job callbacks may reach these too (default: public only)
    metrics = true         # GET /metrics in the Prometheus format (docs/metrics.md)
    metrics_allow = ["192.0.2.0/24"]   # who may scrape it, beside loopback (default: loopback only)
    lend_hours = ["mon-fri 18:00-08:00", "sat-sun 00:00-24:00"]  # local time (default: always)
    pause_load = 0.5       # pause while the owner's load per core stays above this (default 0: never)

Unknown keys and wrong types are refused with a `ConfigError` naming them: a typo must not silently
lend more than the volunteer meant.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from p2pfaas.errors import ConfigError
from p2pfaas.metrics.http import Network, parse_allow
from p2pfaas.node.admission import Admission, Limits
from p2pfaas.node.callbacks import CallbackPolicy
from p2pfaas.node.lending import Schedule
from p2pfaas.node.payments.book import UnpaidPolicy
from p2pfaas.pricing import Prices

# key -> accepted types; `memory` is a size string converted to memory_mb.
_KEYS: dict[str, tuple[type, ...]] = {
    "cpus": (int, float),
    "memory": (str, int),
    "memory_mb": (int,),
    "slots": (int,),
    "queue_size": (int,),
    "price_per_cpu_s_micro": (int,),
    "price_per_gb_s_micro": (int,),
    "bundle_cache_mb": (int,),
    "layer_cache_mb": (int,),
    "max_layer_mb": (int,),
    "workers": (int,),
    "unpaid_keys": (list,),
    "unpaid_owners": (bool,),
    "callback_allow": (list,),
    "metrics": (bool,),
    "metrics_allow": (list,),
    "lend_hours": (list,),
    "pause_load": (int, float),
}
MAX_WORKERS = 64
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
_MB_PER_UNIT = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}


@dataclass(frozen=True)
class NodeConfig:
    anchor_url: str
    key_path: Path
    work_dir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    public_url: str = ""  # what to announce, untested; default: learned (node/reachability.py)
    relays: tuple[str, ...] = ()  # relays to try first if we turn out to be behind NAT
    direct_retest_s: float = 300.0  # while relayed: how often to ask whether we are reachable directly
    tls: str = "auto"  # "on" | "off" | "auto": TLS on the node's identity key except on loopback
    executor: str = "auto"  # "docker" | "process" | "auto"
    allow_unsandboxed: bool = False
    cpus: float = 1.0  # cores lent, shared by all instances
    memory_mb: int = 2048  # memory lent, for running and warm instances together
    slots: int = 4  # invocations run at once; more wait in a queue of queue_size, then "busy"
    queue_size: int = 64
    price_per_cpu_s_micro: int = 20
    price_per_gb_s_micro: int = 2
    bundle_cache_mb: int = 1024  # 0: unbounded
    layer_cache_mb: int = 4096  # unpacked dependency layers (`node/layers.py`); 0: unbounded
    max_layer_mb: int = 1024  # the wheels of one function's lock, at most
    # Lend network to functions that declare egress, through the node's proxy (exec/egress.py);
    # `egress_allow`: ranges it may reach beyond the public internet (a lab's TEST-NET hosts).
    egress: bool = False
    egress_allow: tuple[str, ...] = ()
    runtime_image: str = ""  # "" -> the default runtime image tag
    announce_interval_s: float = 30.0
    revocation_poll_s: float = 30.0  # how often to ask the anchor which functions their owners removed
    dht_port: int | None = None  # None: no overlay; 0: any free UDP port
    dht_host: str = ""  # "" -> host
    peers: tuple[tuple[str, int], ...] = ()  # DHT peers to join through (the anchor's bootstrap node)
    placement: str = "ours"  # placement policy (p2pfaas/placement/policy.py), gossip and drain: issue #6
    gossip_period_s: float = 2.0
    gossip_fanout: int = 2
    drain_deadline_s: float = 60.0
    workers: int = 1  # processes serving invocations on the port (node/workers/); at most one per core
    # Who may run functions here without a voucher (node/payments/book.py `UnpaidPolicy`): nobody by
    # default; a devnet lets functions' owners; a volunteer may list lessee key ids (its own).
    unpaid_owners: bool = False
    unpaid_keys: tuple[str, ...] = ()

    def unpaid(self) -> UnpaidPolicy:
        return UnpaidPolicy(owners=self.unpaid_owners, keys=frozenset(self.unpaid_keys))

    callback_allow: tuple[str, ...] = ()  # CIDRs job callbacks may reach beyond public addresses
    metrics: bool = True  # serve GET /metrics (p2pfaas.metrics) and record its figures
    metrics_allow: tuple[str, ...] = ()  # CIDRs that may scrape /metrics beside loopback
    # When it lends (node/lending.py): weekly hours, local time ("mon-fri 18:00-08:00"; none:
    # always), and the load per core of its owner's own use above which it pauses (0: never).
    lend_hours: tuple[str, ...] = ()
    pause_load: float = 0.0


def memory_mb(text: str | int) -> int:
    """'4g' -> 4096, '512m' -> 512, 2048 -> 2048 (plain numbers are MB)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE.fullmatch(str(text).strip())
    if match is None:
        raise ConfigError(f"memory must look like 4g, 512m or 2048, not {text!r}")
    return int(float(match.group(1)) * _MB_PER_UNIT[match.group(2).lower()])


_KEY_ID = re.compile(r"[0-9a-f]{40}")


def unpaid_keys(values: list[Any] | tuple[Any, ...], *, where: str) -> tuple[str, ...]:
    """Lessee key ids (40 lowercase hex characters, as `p2pfaas keys new` prints) or ConfigError."""
    for value in values:
        if not isinstance(value, str) or not _KEY_ID.fullmatch(value):
            raise ConfigError(f"{where}: unpaid_keys holds key ids (40 hex characters), not {value!r}")
    return tuple(values)


def write_config_file(path: Path, fields: dict[str, Any]) -> None:
    """Write the `NodeConfig` `fields` a config file holds (`memory_mb` as `memory`) as TOML that
    `load_config_file` reads back; fields a config file does not hold are left out."""
    lines = ["# p2pfaas node settings (written by `p2pfaas node join`; docs in p2pfaas/node/settings.py)"]
    for name, value in sorted(fields.items()):
        key = "memory" if name == "memory_mb" else name
        if key not in _KEYS or value is None:
            continue
        if key == "memory":
            value = f"{int(value)}m"
        if isinstance(value, tuple):
            value = list(value)
        lines.append(f"{key} = {json.dumps(value)}")  # JSON's strings, numbers, lists, booleans are TOML
    text = "\n".join(lines) + "\n"
    load_config_file_text(text, where=str(path))  # never write what would not load
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def load_config_file_text(text: str, *, where: str) -> dict[str, Any]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {where} is not valid TOML: {exc}") from None
    return _fields_of(raw, where)


def load_config_file(path: Path) -> dict[str, Any]:
    """The `NodeConfig` fields a TOML file sets. Raises ConfigError for unreadable files, unknown
    keys or wrong types."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return load_config_file_text(text, where=str(path))


def _fields_of(raw: dict[str, Any], path: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        types = _KEYS.get(key)
        if types is None:
            raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(_KEYS))})")
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ConfigError(
                f"{path}: {key} must be {' or '.join(t.__name__ for t in types)}, got {value!r}"
            )
        if key == "memory":
            fields["memory_mb"] = memory_mb(cast(str | int, value))
        elif key == "cpus":
            fields[key] = float(cast(float, value))
        elif key == "unpaid_keys":
            fields[key] = unpaid_keys(cast(list[Any], value), where=str(path))
        elif key == "pause_load":
            fields[key] = float(cast(float, value))
        elif key in ("callback_allow", "metrics_allow", "lend_hours"):
            items = cast(list[object], value)
            if not all(isinstance(item, str) for item in items):
                raise ConfigError(f"{path}: {key} must be a list of CIDR strings, got {value!r}")
            fields[key] = tuple(cast(list[str], items))
        else:
            fields[key] = value
    return fields


def node_resources(config_file: str | Path | None, **options: Any) -> dict[str, Any]:
    """The resource and price fields of `NodeConfig`: the config file's, overridden by the command
    line's `options` that were given (not None)."""
    fields = load_config_file(Path(config_file)) if config_file else {}
    fields.update({key: value for key, value in options.items() if value is not None})
    return fields


def egress_networks(config: NodeConfig) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in config.egress_allow)
    except ValueError as exc:
        raise ConfigError(f"egress_allow: {exc}") from None


def metrics_networks(config: NodeConfig) -> tuple[Network, ...]:
    """Who may scrape the node's /metrics: loopback, and `metrics_allow`."""
    try:
        return parse_allow(config.metrics_allow)
    except ValueError as exc:
        raise ConfigError(f"metrics_allow: {exc} (e.g. 192.0.2.0/24)") from None


def check(config: NodeConfig) -> None:
    """Refuse settings no node can run with."""
    if not 0 < config.cpus <= 1024:
        raise ConfigError(f"cpus must be in (0, 1024], got {config.cpus}")
    Limits(slots=config.slots, memory_mb=config.memory_mb, queue_size=config.queue_size)
    Prices(config.price_per_cpu_s_micro, config.price_per_gb_s_micro)
    CallbackPolicy.from_cidrs(config.callback_allow)  # a ConfigError names a bad range
    metrics_networks(config)
    Schedule.parse(config.lend_hours)  # a ConfigError names a bad span
    if (config.lend_hours or config.pause_load) and config.workers > 1:
        raise ConfigError("lend_hours and pause_load work with one worker process for now (workers = 1)")
    if not 0 <= config.pause_load <= 64:
        raise ConfigError(
            f"pause_load is a load per core from 0 (never pause) to 64, got {config.pause_load}"
        )
    if not config.direct_retest_s > 0:
        raise ConfigError(
            f"direct_retest_s must be a positive number of seconds, not {config.direct_retest_s}"
        )
    egress_networks(config)  # a ConfigError names a bad range
    if config.bundle_cache_mb < 0:
        raise ConfigError(f"bundle cache size must not be negative, got {config.bundle_cache_mb}")
    if config.layer_cache_mb < 0 or config.max_layer_mb < 1:
        raise ConfigError(
            f"layer_cache_mb must not be negative and max_layer_mb must be at least 1, got "
            f"{config.layer_cache_mb} and {config.max_layer_mb}"
        )
    if not 1 <= config.workers <= min(config.slots, MAX_WORKERS):
        raise ConfigError(
            f"workers must be between 1 and the slots ({config.slots}, at most {MAX_WORKERS}): each "
            f"worker process runs its share of the slots; got {config.workers}"
        )


def share(total: int, workers: int, index: int) -> int:
    """Worker `index`'s part of `total` split as evenly as it goes; the parts sum to `total`.

    What a volunteer lends is split statically between a node's worker processes, so that the
    node never runs more than it lends without asking its siblings on every invocation."""
    return total // workers + (1 if index < total % workers else 0)


def service_options(config: NodeConfig, *, rng: random.Random, worker: int = 0) -> dict[str, Any]:
    """The `NodeService` keyword arguments that follow from `config`, for worker process `worker`."""
    check(config)
    n = config.workers
    return {
        # An instance gets at most one core: the node's `cpus` is the quota all instances share.
        "cpus_per_instance": min(1.0, config.cpus),
        "admission": Admission(
            Limits(
                slots=share(config.slots, n, worker),
                memory_mb=share(config.memory_mb, n, worker),
                queue_size=max(1, share(config.queue_size, n, worker)),
            )
        ),
        "prices": Prices(config.price_per_cpu_s_micro, config.price_per_gb_s_micro),
        "rng": rng,
    }
