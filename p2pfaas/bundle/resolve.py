"""Resolving a function's requirements into wheels for the runtime's platform, at pack time.

`lock_directory(directory)` runs pip (`pip download --only-binary=:all:` for CPython 3.11 on
manylinux x86-64, whatever the machine packing is) over the requirements the directory names
(`bundle.lock.requirements_of`), keeps the wheels in the client's wheel cache by SHA-256, and writes
`p2pfaas.lock` beside the manifest. A lock that still matches the requirements, and whose wheels
are all in the cache, is kept as it is, so packing again is offline and gives the same bundle.
A requirement with no wheel for the platform is refused, naming it: nodes never build anything.

This is the only place that talks to a package index; nodes fetch the locked wheels from peers and
the anchor (`p2pfaas.node.layers`) and run with no network.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from p2pfaas.bundle.lock import (
    LOCK_FILE,
    MAX_WHEEL_BYTES,
    Lock,
    LockedWheel,
    normalize,
    read_lock,
    requirements_hash,
    requirements_of,
)
from p2pfaas.errors import BundleError

__all__ = ["default_cache", "lock_directory", "wheel_path"]

# The runtime image's glibc (Debian bookworm, 2.36) runs every manylinux wheel up to 2.36.
PLATFORMS = (
    "manylinux_2_34_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
PIP_TIMEOUT_S = 600.0
_WHEEL_NAME = re.compile(r"(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl")


def default_cache() -> Path:
    """Where the client keeps wheels: `$P2PFAAS_WHEEL_CACHE`, else `$XDG_CACHE_HOME/p2pfaas/wheels`."""
    explicit = os.environ.get("P2PFAAS_WHEEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "p2pfaas" / "wheels"


def wheel_path(cache: Path, wheel: LockedWheel) -> Path:
    return cache / wheel.sha256 / wheel.filename


def lock_directory(directory: Path, *, cache: Path | None = None) -> Lock | None:
    """Lock `directory`'s requirements (see the module docstring); None when it names none."""
    directory = Path(directory)
    cache = cache or default_cache()
    requirements = requirements_of(directory)
    lock_path = directory / LOCK_FILE
    if not requirements:
        if lock_path.exists():
            lock_path.unlink()  # written by an earlier pack: nothing to lock any more
        return None
    wanted = requirements_hash(requirements)
    if lock_path.exists():
        current = read_lock(directory)
        if (
            current is not None
            and current.requirements_sha256 == wanted
            and all(_cached(cache, w) for w in current.wheels)
        ):
            return current
    with tempfile.TemporaryDirectory(prefix="p2pfaas-pip-") as tmp:
        _download(requirements, Path(tmp))
        wheels = sorted(_keep(cache, path) for path in Path(tmp).iterdir())
    if len({w.name for w in wheels}) != len(wheels):
        raise BundleError(f"pip resolved one project twice: {[w.filename for w in wheels]}")
    lock = Lock(tuple(wheels), wanted)
    lock_path.write_text(lock.to_json())
    return lock


def _download(requirements: list[str], destination: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        "3.11",
        "--abi",
        "cp311",
        "--abi",
        "abi3",
        "--abi",
        "none",
        *(f"--platform={platform}" for platform in PLATFORMS),
        "--dest",
        str(destination),
        "--",
        *requirements,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise BundleError(f"pip did not resolve {requirements} within {PIP_TIMEOUT_S:g} s") from None
    if done.returncode == 0:
        return
    missing = re.findall(r"No matching distribution found for (\S+)", done.stderr)
    if missing:
        raise BundleError(
            f"no wheel for the runtime (CPython 3.11, manylinux x86-64) of: {', '.join(missing)}. "
            "Nodes install wheels only and never build: use a version that publishes one, or "
            "vendor pure-Python code into the function directory"
        )
    raise BundleError(f"pip could not resolve {requirements}: {done.stderr.strip()[-800:]}")


def _keep(cache: Path, path: Path) -> LockedWheel:
    match = _WHEEL_NAME.fullmatch(path.name)
    if match is None:
        raise BundleError(f"pip left {path.name!r}, which is not a wheel")
    data = path.read_bytes()
    if len(data) > MAX_WHEEL_BYTES:
        raise BundleError(f"{path.name} is {len(data)} bytes, over the {MAX_WHEEL_BYTES}-byte wheel limit")
    wheel = LockedWheel(
        normalize(match["name"]), match["version"], path.name, hashlib.sha256(data).hexdigest(), len(data)
    )
    target = wheel_path(cache, wheel)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        shutil.copyfile(path, partial)
        partial.replace(target)
    return wheel


def _cached(cache: Path, wheel: LockedWheel) -> bool:
    path = wheel_path(cache, wheel)
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return len(data) == wheel.size and hashlib.sha256(data).hexdigest() == wheel.sha256
