"""Builds the Python runtime image (Debian python3 + the shim) locally, registry or not.

The base is `python:3.11-slim` when it is present or can be pulled; when the pull fails (an
offline volunteer, no registry mirror) the base is a Debian bookworm root filesystem made with
debootstrap from a Debian mirror, stripped of apt caches and docs, and imported as
`p2pfaas/debian-python3:bookworm` (kept, so later shim changes rebuild only the top layer). The
top layer is `runtime/Dockerfile`: the shim's files in /opt/p2pfaas, its entry point
/opt/p2pfaas/shim.py, run as uid 65534.

The image is labelled with a hash of the shim's files and the Dockerfile, so a node whose image predates
a shim change rebuilds it, and a current image is returned at once (`image_is_current`).

This module is synchronous (the docker SDK is): from async code call it through
`asyncio.to_thread`. It does not push images anywhere or garbage-collect old ones.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from p2pfaas.errors import ExecutorError
from p2pfaas.exec.runtime import DOCKERFILE_PATH, SHIM_FILES

RUNTIME_IMAGE_TAG = "p2pfaas/runtime-python:0.1"
RUNTIME_VERSION = "0.1"
REGISTRY_BASE = "python:3.11-slim"
DEBIAN_BASE_TAG = "p2pfaas/debian-python3:bookworm"
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

LABEL_RUNTIME_HASH = "p2pfaas.runtime.sha256"
LABEL_RUNTIME_VERSION = "p2pfaas.runtime.version"
LABEL_BASE = "p2pfaas.runtime.base"

# Dropped from the debootstrapped root: nothing at run time reads them, and they are a third of it.
_STRIPPED_DIRS = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
_SUBPROCESS_TIMEOUT_S = 1800.0


def _discard(line: str) -> None:
    pass


def runtime_hash() -> str:
    """SHA-256 over everything that defines the top layer: the Dockerfile and the shim's files."""
    digest = hashlib.sha256()
    for path in (DOCKERFILE_PATH, *SHIM_FILES):
        data = path.read_bytes()
        digest.update(f"{path.name}:{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def image_is_current(client: docker.DockerClient, *, tag: str = RUNTIME_IMAGE_TAG) -> bool:
    """True if `tag` exists locally and was built from the current shim and Dockerfile."""
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    labels = image.labels or {}
    return bool(labels.get(LABEL_RUNTIME_HASH) == runtime_hash())


def build_runtime_image(
    *,
    tag: str = RUNTIME_IMAGE_TAG,
    rootfs_cache: Path | None = None,
    mirror: str = DEFAULT_MIRROR,
    log: Callable[[str], None] = _discard,
    client: docker.DockerClient | None = None,
    registry_base: str | None = REGISTRY_BASE,
) -> str:
    """Build `tag` unless it is current; return the image id. Blocking: may take minutes.

    `rootfs_cache` keeps the debootstrapped root filesystem tarball between builds (useful when
    the imported base image gets pruned); `registry_base=None` skips the registry attempt.
    Raises `ExecutorError` if neither base can be had or the build fails.
    """
    client = client or docker.from_env(timeout=600)
    try:
        if image_is_current(client, tag=tag):
            log(f"{tag} is current")
            return str(client.images.get(tag).id)
        base = _registry_base(client, registry_base, log) or _debian_base(client, rootfs_cache, mirror, log)
        return _build_top_layer(client, base, tag, log)
    except docker.errors.DockerException as exc:
        raise ExecutorError(f"building {tag} failed: {exc}") from exc


def _registry_base(client: docker.DockerClient, name: str | None, log: Callable[[str], None]) -> str | None:
    if name is None:
        return None
    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    log(f"pulling {name}")
    try:
        client.images.pull(name)
    except docker.errors.APIError as exc:
        # Offline, no registry, or rate-limited: all fail fast, and all mean "use debootstrap".
        log(f"cannot pull {name} ({exc.explanation or exc}); building a Debian base with debootstrap")
        return None
    return name


def _debian_base(
    client: docker.DockerClient, rootfs_cache: Path | None, mirror: str, log: Callable[[str], None]
) -> str:
    try:
        client.images.get(DEBIAN_BASE_TAG)
        log(f"using existing base {DEBIAN_BASE_TAG}")
        return DEBIAN_BASE_TAG
    except docker.errors.ImageNotFound:
        pass
    if rootfs_cache is not None:
        rootfs_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="p2pfaas-rootfs-", dir=rootfs_cache) as scratch:
        tarball = (rootfs_cache or Path(scratch)) / f"{DEBIAN_SUITE}-python3-rootfs.tar"
        if tarball.exists():
            log(f"using cached root filesystem {tarball}")
        else:
            _debootstrap_tarball(tarball, Path(scratch) / "root", mirror, log)
        log(f"importing {tarball} as {DEBIAN_BASE_TAG}")
        repository, _, image_tag = DEBIAN_BASE_TAG.partition(":")
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=image_tag, changes=["ENV PATH=/usr/bin:/bin"]
        )
    return DEBIAN_BASE_TAG


def _debootstrap_tarball(tarball: Path, root: Path, mirror: str, log: Callable[[str], None]) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ExecutorError("no registry base and no debootstrap: install debootstrap or reach a registry")
    if os.geteuid() != 0:
        raise ExecutorError("debootstrap needs root: run `p2pfaas runtime build` as root once")
    log(f"debootstrap {DEBIAN_SUITE} (minbase + python3) from {mirror} into {root}")
    # python3, not python3-minimal: the latter lacks json, asyncio and most of the stdlib.
    command = [debootstrap, "--variant=minbase", "--include=python3", DEBIAN_SUITE, str(root), mirror]
    _run(command, what="debootstrap")
    for relative in _STRIPPED_DIRS:
        directory = root / relative
        if directory.is_dir():
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    partial = tarball.with_suffix(".partial")
    # GNU tar handles the device nodes and hard links debootstrap leaves; --numeric-owner keeps uids.
    _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], what="tar")
    partial.replace(tarball)  # atomic: a cache hit is always a complete tarball
    log(f"root filesystem: {tarball.stat().st_size / 2**20:.0f} MiB")


def _run(command: list[str], *, what: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=_SUBPROCESS_TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"")[-2000:].decode(errors="replace")
        raise ExecutorError(f"{what} failed with status {exc.returncode}: {tail}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ExecutorError(f"{what} did not finish within {_SUBPROCESS_TIMEOUT_S:.0f} s") from exc


def _build_top_layer(client: docker.DockerClient, base: str, tag: str, log: Callable[[str], None]) -> str:
    labels = {
        LABEL_RUNTIME_HASH: runtime_hash(),
        LABEL_RUNTIME_VERSION: RUNTIME_VERSION,
        LABEL_BASE: base,
    }
    log(f"building {tag} on {base}")
    with tempfile.TemporaryDirectory(prefix="p2pfaas-build-") as context:
        # A context of just these files: the build sends nothing else to the engine.
        shutil.copy(DOCKERFILE_PATH, Path(context) / "Dockerfile")
        for path in SHIM_FILES:
            shutil.copy(path, Path(context) / path.name)
        try:
            image, build_log = client.images.build(
                path=context, tag=tag, buildargs={"BASE": base}, labels=labels, rm=True, forcerm=True
            )
        except docker.errors.BuildError as exc:
            lines = [str(chunk.get("stream") or chunk.get("error") or "") for chunk in exc.build_log]
            raise ExecutorError(f"building {tag} failed: {exc.msg}\n{''.join(lines)[-2000:]}") from exc
    for chunk in build_log:
        line = str(chunk.get("stream") or "").strip()
        if line.startswith("Step "):
            log(line)
    log(f"built {tag} ({image.id})")
    return str(image.id)
