"""Dependency locks (`p2pfaas.bundle.lock`): requirements read from a directory, the lock's format
and its checks, and the layer digest that functions with the same wheels share."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from p2pfaas.bundle.lock import Lock, LockedWheel, parse_lock, read_lock, requirements_of
from p2pfaas.errors import BundleError, ManifestError

NUMPY = LockedWheel("numpy", "2.1.0", "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "a" * 64, 1000)
SIX = LockedWheel("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl", "b" * 64, 10)


def manifest(directory: Path, extra: str = "") -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "p2pfaas.toml").write_text(f'name = "f"\nversion = "1"\nhandler = "m:h"\n{extra}')
    return directory


def test_requirements_come_from_the_manifest_or_requirements_txt(tmp_path: Path) -> None:
    assert requirements_of(manifest(tmp_path / "none")) == []
    listed = manifest(tmp_path / "listed", 'requirements = ["numpy>=2", " six "]\n')
    assert requirements_of(listed) == ["numpy>=2", "six"]
    beside = manifest(tmp_path / "beside")
    (beside / "requirements.txt").write_text("# data\nnumpy>=2  # arrays\n\nsix\n")
    assert requirements_of(beside) == ["numpy>=2", "six"]
    for bad in ("--index-url http://evil/", "https://x/y.whl", "./local", "/abs"):
        (beside / "requirements.txt").write_text(bad + "\n")
        with pytest.raises(ManifestError, match="not a package from the index"):
            requirements_of(beside)
    with pytest.raises(ManifestError, match="list of strings"):
        requirements_of(manifest(tmp_path / "wrong", "requirements = 3\n"))


def test_a_lock_round_trips_and_its_layer_digest_ignores_what_asked_for_it(tmp_path: Path) -> None:
    lock = Lock((NUMPY, SIX), "c" * 64)
    directory = tmp_path / "f"
    directory.mkdir()
    (directory / "p2pfaas.lock").write_text(lock.to_json())
    assert read_lock(directory) == lock
    assert read_lock(tmp_path) is None
    assert replace(lock, requirements_sha256="d" * 64).layer_digest == lock.layer_digest
    assert Lock((NUMPY,), "c" * 64).layer_digest != lock.layer_digest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(platform="win_amd64"), "locked for"),
        (lambda d: d.update(wheels=[]), "1 to 256 wheels"),
        (lambda d: d["wheels"][0].update(sha256="zz"), "malformed entry"),
        (lambda d: d["wheels"][0].update(filename="../../etc/passwd"), "malformed entry"),
        (lambda d: d["wheels"][0].update(size=0), "malformed entry"),
        (lambda d: d["wheels"][0].update(size=True), "malformed entry"),
        (lambda d: d["wheels"].reverse(), "sorted by name"),
        (lambda d: d["wheels"].append(dict(d["wheels"][0])), "sorted by name, each project once"),
        (lambda d: d.pop("wheels"), "not a p2pfaas lock"),
    ],
)
def test_a_malformed_lock_is_refused_naming_what(change: object, message: str) -> None:
    document = json.loads(Lock((NUMPY, SIX), "c" * 64).to_json())
    change(document)  # type: ignore[operator]
    with pytest.raises(BundleError, match=message):
        parse_lock(json.dumps(document).encode())
    with pytest.raises(BundleError, match="not a p2pfaas lock"):
        parse_lock(b"\xff not json")
