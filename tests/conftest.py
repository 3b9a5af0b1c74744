"""Shared test fixtures.

Docker and MySQL tests need real services. Where they are missing the tests skip with the reason,
unless P2PFAAS_REQUIRE_DOCKER=1 / P2PFAAS_REQUIRE_MYSQL=1 is set (as CI does), in which case they fail.
"""

from __future__ import annotations

import gc
import os
import warnings
from pathlib import Path
from typing import Any, cast

import pytest


def require_or_skip(env_var: str, what: str, reason: str) -> None:
    """Skip the calling test because `what` is unavailable, or fail if `env_var` demands it."""
    message = f"{what} unavailable: {reason}"
    if os.environ.get(env_var) == "1":
        pytest.fail(f"{message} (and {env_var}=1 requires it)", pytrace=False)
    pytest.skip(f"{message} (set {env_var}=1 to make this a failure)")


def docker_client_or_skip() -> object:
    """A connected `docker.DockerClient`, or skip/fail as `require_or_skip` says."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # any failure to reach the engine means "no Docker here"
        require_or_skip("P2PFAAS_REQUIRE_DOCKER", "Docker engine", f"{type(exc).__name__}: {exc}")
    return client


def mysql_url_or_skip() -> str:
    """The SQLAlchemy URL of a reachable MariaDB/MySQL test database, or skip/fail.

    Taken from P2PFAAS_TEST_MYSQL_URL, default `mysql+aiomysql://p2pfaas:p2pfaas@127.0.0.1:3306/p2pfaas_test`.
    """
    url = os.environ.get(
        "P2PFAAS_TEST_MYSQL_URL", "mysql+aiomysql://p2pfaas:p2pfaas@127.0.0.1:3306/p2pfaas_test"
    )
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url.replace("mysql+aiomysql", "mysql"))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 3306), timeout=2):
            pass
    except OSError as exc:
        require_or_skip("P2PFAAS_REQUIRE_MYSQL", "MariaDB/MySQL", f"{url}: {exc}")
    return url


@pytest.fixture(scope="session")
def docker_client() -> Any:
    try:
        return cast(Any, docker_client_or_skip())
    except pytest.skip.Exception as exc:
        reason = str(exc.msg)
    # docker-py leaks its socket when the engine is unreachable (unixconn.py connects before it
    # keeps the socket), and the engine error's traceback holds it. With that traceback dropped,
    # collect it now, where the ResourceWarning is expected, not during some later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    pytest.skip(reason)


@pytest.fixture(scope="session")
def runtime_image(docker_client: Any) -> str:
    """The runtime image, built once per session (at once if current)."""
    cache = Path(os.environ.get("P2PFAAS_ROOTFS_CACHE", "~/.cache/p2pfaas/rootfs")).expanduser()
    from p2pfaas.exec.runtime_image import build_runtime_image

    return build_runtime_image(client=docker_client, rootfs_cache=cache)
