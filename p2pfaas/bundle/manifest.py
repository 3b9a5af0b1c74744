"""Function manifests: reading `p2pfaas.toml` and checking a `Manifest`'s values.

A function directory holds a TOML manifest naming the function, its version, runtime and handler
(`module.path:function`) and the limits it runs under. `load_manifest` reads one from a directory,
`parse_manifest` from bytes (as found inside an archive), and `validate_manifest` checks a
`Manifest` however it was obtained (for example decoded from the wire, where the codec has checked
only types and lengths).

This module does not pack, sign or verify bundles (see `bundle.py`) and does not decide whether a
node can honour the limits (nodes compare them with what they lend).
"""

from __future__ import annotations

import keyword
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from p2pfaas.errors import ManifestError
from p2pfaas.messages import Manifest

MANIFEST_FILE = "p2pfaas.toml"
SUPPORTED_RUNTIMES = ("python3.11",)
MAX_MANIFEST_BYTES = 64 * 1024  # a manifest is a few lines; anything larger is a mistake or an attack

MIN_MEMORY_MB, MAX_MEMORY_MB = 32, 4096
MAX_CONCURRENCY = 64  # invocations per instance; each is a thread and a connection in the runtime
MAX_TIMEOUT_S = 900.0

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_VERSION = re.compile(r"[!-~]{1,32}")  # visible ASCII: versions end up in paths, URLs and logs
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"  # ASCII only, so a handler means the same on every platform
_HANDLER = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})*:{_IDENTIFIER}")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
MAX_EGRESS = 16  # hosts one function may reach

_REQUIRED = ("name", "version", "handler")
_DEFAULTS: dict[str, Any] = {
    "runtime": "python3.11",
    "memory_mb": 128,
    "timeout_s": 10.0,
    "deterministic": False,
    "concurrency": 1,
    "egress": [],
}
# Read at pack time only (`bundle.lock.requirements_of`): the lock they resolve to travels in the bundle.
_PACK_TIME_KEYS = frozenset({"requirements"})
_KEYS = frozenset(_REQUIRED) | _DEFAULTS.keys() | _PACK_TIME_KEYS


def load_manifest(directory: Path) -> Manifest:
    """Read and validate `directory/p2pfaas.toml`; raise `ManifestError` if it is missing or invalid."""
    path = Path(directory) / MANIFEST_FILE
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest; a function directory needs a {MANIFEST_FILE}") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):  # a symlink could point anywhere; pack_directory refuses them too
        raise ManifestError(f"{path}: the manifest must be a regular file")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: {st.st_size} bytes is over the {MAX_MANIFEST_BYTES}-byte limit")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_manifest(data, source=str(path))


def parse_manifest(data: bytes, *, source: str = MANIFEST_FILE) -> Manifest:
    """Parse and validate manifest TOML; `source` names it in error messages."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{source}: {len(data)} bytes is over the {MAX_MANIFEST_BYTES}-byte limit")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ManifestError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(document.keys() - _KEYS)
    if unknown:
        raise ManifestError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(sorted(_KEYS))}"
        )
    missing = [key for key in _REQUIRED if key not in document]
    if missing:
        raise ManifestError(f"{source}: missing required key(s) {', '.join(missing)}")
    values = {**_DEFAULTS, **document}
    for key in ("name", "version", "runtime", "handler"):
        _expect(values, key, type(values[key]) is str, "a string", source)
    _expect(values, "memory_mb", type(values["memory_mb"]) is int, "an integer", source)
    # TOML writes `timeout_s = 5` as an integer; bool is an int subclass and is not a number here.
    _expect(values, "timeout_s", type(values["timeout_s"]) in (int, float), "a number", source)
    _expect(values, "deterministic", type(values["deterministic"]) is bool, "true or false", source)
    _expect(values, "concurrency", type(values["concurrency"]) is int, "an integer", source)
    egress = values["egress"]
    _expect(values, "egress", type(egress) is list and all(type(h) is str for h in egress),
            'a list of "host:port" strings', source)  # fmt: skip
    manifest = Manifest(
        name=values["name"],
        version=values["version"],
        runtime=values["runtime"],
        handler=values["handler"],
        memory_mb=values["memory_mb"],
        timeout_s=float(values["timeout_s"]),
        deterministic=values["deterministic"],
        concurrency=values["concurrency"],
        egress=tuple(egress),
    )
    try:
        validate_manifest(manifest)
    except ManifestError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    return manifest


def _expect(values: dict[str, Any], key: str, ok: bool, what: str, source: str) -> None:
    if not ok:
        value = values[key]
        raise ManifestError(f"{source}: {key} must be {what}, got {type(value).__name__} {value!r:.80}")


def validate_manifest(m: Manifest) -> None:
    """Raise `ManifestError` naming the first field of `m` that is out of range or malformed."""
    if not (isinstance(m.name, str) and _NAME.fullmatch(m.name)):
        raise ManifestError(f"name {m.name!r:.80} must match {_NAME.pattern} (lowercase, digits, _ and -)")
    if not (isinstance(m.version, str) and _VERSION.fullmatch(m.version)):
        raise ManifestError(f"version {m.version!r:.80} must be 1 to 32 visible ASCII characters")
    if m.runtime not in SUPPORTED_RUNTIMES:
        raise ManifestError(f"runtime {m.runtime!r:.80} is not supported; use one of {SUPPORTED_RUNTIMES}")
    if not (isinstance(m.handler, str) and len(m.handler) <= 128 and _HANDLER.fullmatch(m.handler)):
        raise ManifestError(f"handler {m.handler!r:.130} must look like 'module.path:function'")
    reserved = [part for part in re.split(r"[.:]", m.handler) if keyword.iskeyword(part)]
    if reserved:  # `import` cannot name a module or a function, so the handler could never load
        raise ManifestError(f"handler {m.handler!r} uses the Python keyword {reserved[0]!r}")
    if type(m.memory_mb) is not int or not MIN_MEMORY_MB <= m.memory_mb <= MAX_MEMORY_MB:
        raise ManifestError(
            f"memory_mb {m.memory_mb!r} must be an integer in {MIN_MEMORY_MB}..{MAX_MEMORY_MB}"
        )
    # `not 0 < t <= max` also rejects NaN, for which every comparison is false.
    if type(m.timeout_s) not in (float, int) or not 0.0 < m.timeout_s <= MAX_TIMEOUT_S:
        raise ManifestError(f"timeout_s {m.timeout_s!r} must be a number in (0, {MAX_TIMEOUT_S:g}]")
    if type(m.deterministic) is not bool:
        raise ManifestError(f"deterministic {m.deterministic!r} must be true or false")
    if type(m.concurrency) is not int or not 1 <= m.concurrency <= MAX_CONCURRENCY:
        raise ManifestError(f"concurrency {m.concurrency!r} must be an integer in 1..{MAX_CONCURRENCY}")
    if len(m.egress) > MAX_EGRESS:
        raise ManifestError(f"egress names {len(m.egress)} hosts; at most {MAX_EGRESS}")
    for entry in m.egress:
        if not (isinstance(entry, str) and parse_egress(entry)):
            raise ManifestError(
                f"egress entry {entry!r:.80} must be a host name and port, e.g. \"api.example.org:443\""
            )


def parse_egress(entry: str) -> tuple[str, int] | None:
    """("host", port) of an egress entry ("api.example.org:443", "192.0.2.7:8080"), else None. Host
    names are lowercase DNS names or IPv4 literals: no wildcards, no userinfo, no paths."""
    host, sep, port = entry.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535 or not _HOST.fullmatch(host):
        return None
    return host, int(port)
