"""Resolving requirements into wheels (`p2pfaas.bundle.resolve`), offline: where the wheel cache is, a
directory with nothing to lock, and a lock kept as it is while it matches and its wheels are cached."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from p2pfaas.bundle.lock import LOCK_FILE, Lock, LockedWheel, read_lock, requirements_hash
from p2pfaas.bundle.resolve import default_cache, lock_directory, wheel_path
from p2pfaas.errors import BundleError

# No index serves this project: were pip asked, lock_directory would raise.
REQUIREMENT = "p2pfaas-no-such-project-anywhere==1.0"
WHEEL_BYTES = b"not really a zip, but the cache keys by content"


def function_dir(root: Path, requirements: str = "") -> Path:
    root.mkdir()
    (root / "p2pfaas.toml").write_text(f'name = "f"\nversion = "1"\nhandler = "m:h"\n{requirements}')
    return root


def cached_wheel(cache: Path) -> LockedWheel:
    wheel = LockedWheel(
        "p2pfaas-no-such-project-anywhere",
        "1.0",
        "p2pfaas_no_such_project_anywhere-1.0-py3-none-any.whl",
        hashlib.sha256(WHEEL_BYTES).hexdigest(),
        len(WHEEL_BYTES),
    )
    path = wheel_path(cache, wheel)
    path.parent.mkdir(parents=True)
    path.write_bytes(WHEEL_BYTES)
    return wheel


def test_the_wheel_cache_is_where_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("P2PFAAS_WHEEL_CACHE", str(tmp_path / "explicit"))
    assert default_cache() == tmp_path / "explicit"
    monkeypatch.delenv("P2PFAAS_WHEEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache() == tmp_path / "xdg" / "p2pfaas" / "wheels"


def test_nothing_to_lock_removes_a_lock_an_earlier_pack_wrote(tmp_path: Path) -> None:
    directory = function_dir(tmp_path / "fn")
    (directory / LOCK_FILE).write_text("stale")
    assert lock_directory(directory, cache=tmp_path / "cache") is None
    assert not (directory / LOCK_FILE).exists()


def test_a_matching_lock_with_its_wheels_cached_is_kept_without_pip(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    directory = function_dir(tmp_path / "fn", f'requirements = ["{REQUIREMENT}"]\n')
    lock = Lock((cached_wheel(cache),), requirements_hash([REQUIREMENT]))
    (directory / LOCK_FILE).write_text(lock.to_json())
    assert lock_directory(directory, cache=cache) == lock
    assert read_lock(directory) == lock


def test_a_lock_whose_wheel_left_the_cache_is_resolved_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip runs, offline: it finds no wheel and says which
    cache = tmp_path / "cache"
    directory = function_dir(tmp_path / "fn", f'requirements = ["{REQUIREMENT}"]\n')
    wheel = cached_wheel(cache)
    wheel_path(cache, wheel).write_bytes(b"damaged")  # no longer what the lock names
    (directory / LOCK_FILE).write_text(Lock((wheel,), requirements_hash([REQUIREMENT])).to_json())
    with pytest.raises(
        BundleError, match=r"no wheel for the runtime .* of: p2pfaas-no-such-project-anywhere"
    ):
        lock_directory(directory, cache=cache)
