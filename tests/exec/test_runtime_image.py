"""The runtime image: labelled with the shim's hash, rebuilt when the shim changes, reused otherwise."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import p2pfaas.exec.runtime_image as runtime_image_module
from p2pfaas.exec.runtime import RUNTIME_DIR, SHIM_FILES, SHIM_PATH
from p2pfaas.exec.runtime_image import (
    LABEL_RUNTIME_HASH,
    RUNTIME_IMAGE_TAG,
    build_runtime_image,
    image_is_current,
    runtime_hash,
)


def _changed(tmp_path: Path, name: str) -> tuple[Path, ...]:
    """The shim's files with `name` changed (a copy in `tmp_path`)."""
    changed = tmp_path / name
    changed.write_text((RUNTIME_DIR / name).read_text() + "\n# a change\n")
    return tuple(changed if path.name == name else path for path in SHIM_FILES)


@pytest.mark.parametrize("name", [path.name for path in SHIM_FILES])
def test_hash_covers_the_shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    before = runtime_hash()
    assert runtime_hash() == before
    monkeypatch.setattr(runtime_image_module, "SHIM_FILES", _changed(tmp_path, name))
    assert runtime_hash() != before


def test_every_file_of_the_shim_goes_into_the_image() -> None:
    """A module added beside the shim is in `SHIM_FILES`, so the image holds it and its hash covers it."""
    assert SHIM_PATH in SHIM_FILES
    assert set(SHIM_FILES) == set(RUNTIME_DIR.glob("*.py")) - {RUNTIME_DIR / "__init__.py"}


@pytest.mark.docker
def test_built_image_is_current_and_labelled(runtime_image: str, docker_client: Any) -> None:
    image = docker_client.images.get(RUNTIME_IMAGE_TAG)
    assert image.id == runtime_image
    assert image.labels[LABEL_RUNTIME_HASH] == runtime_hash()
    assert image_is_current(docker_client)
    config = image.attrs["Config"]
    assert config["User"] == "65534:65534"
    assert config["Entrypoint"][-1] == "/opt/p2pfaas/shim.py"
    # A second build finds it current and returns the same image.
    assert build_runtime_image(client=docker_client) == runtime_image


@pytest.mark.docker
def test_shim_change_rebuilds(
    runtime_image: str, docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = f"p2pfaas/runtime-python:test-{uuid.uuid4().hex[:8]}"
    docker_client.images.get(runtime_image).tag(tag)  # an image built from the "old" shim
    monkeypatch.setattr(runtime_image_module, "SHIM_FILES", _changed(tmp_path, "framing.py"))
    try:
        assert not image_is_current(docker_client, tag=tag)
        rebuilt = build_runtime_image(tag=tag, client=docker_client)
        assert rebuilt != runtime_image
        assert image_is_current(docker_client, tag=tag)
        assert docker_client.images.get(tag).labels[LABEL_RUNTIME_HASH] == runtime_hash()
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.mark.docker
def test_missing_tag_is_not_current(docker_client: Any) -> None:
    assert not image_is_current(docker_client, tag="p2pfaas/runtime-python:never-built")


@pytest.mark.docker
def test_runtime_has_the_stdlib_the_shim_needs(runtime_image: str, docker_client: Any) -> None:
    # python3-minimal lacks json; the image must have the full stdlib.
    output = docker_client.containers.run(
        runtime_image,
        entrypoint=["python3", "-c", "import json, socket, resource, traceback, argparse; print('ok')"],
        network_mode="none",
        remove=True,
    )
    assert output.strip() == b"ok"
