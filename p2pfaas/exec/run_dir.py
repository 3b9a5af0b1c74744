"""An executor's working directory: one subdirectory per instance, holding its shim socket.

Shared by the Docker executor (each subdirectory is bind-mounted into its container) and the
process executor. The directory belongs to one executor: entries that look like instance
directories and are left from a previous run are deleted by `sweep`. Blocking file-system calls:
run them through `asyncio.to_thread` from async code.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

from p2pfaas.errors import ConfigError

SOCKET_NAME = "shim.sock"
INSTANCE_ID_PATTERN = re.compile(r"^[0-9a-f]{10}$")  # what WarmPool generates
# sockaddr_un holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH_BYTES = 107


class RunDir:
    """Paths and housekeeping for the per-instance directories under `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()
        longest = self.socket_path("0" * 10)
        if len(bytes(longest)) > _MAX_SOCKET_PATH_BYTES:
            raise ConfigError(
                f"work dir {self.path} is too long for unix socket paths ({longest} exceeds "
                f"{_MAX_SOCKET_PATH_BYTES} bytes); choose a shorter one"
            )

    def instance_dir(self, instance_id: str) -> Path:
        assert INSTANCE_ID_PATTERN.match(instance_id), instance_id
        return self.path / instance_id

    def socket_path(self, instance_id: str) -> Path:
        return self.path / instance_id / SOCKET_NAME

    def create(self) -> None:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def leftovers(self) -> list[Path]:
        """Instance directories in `path` (after a crash, those of a previous run)."""
        if not self.path.is_dir():
            return []
        return [entry for entry in self.path.iterdir() if INSTANCE_ID_PATTERN.match(entry.name)]

    def sweep(self) -> None:
        for entry in self.leftovers():
            _remove_tree(entry)

    def remove(self, instance_id: str) -> None:
        _remove_tree(self.instance_dir(instance_id))


def _remove_tree(path: Path) -> None:
    """Remove an instance directory, sealed read-only (see `docker_exec`) or not: a non-root
    owner must make it writable again first (root need not, but it costs nothing)."""
    with contextlib.suppress(OSError):
        path.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)
