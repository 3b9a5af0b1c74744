"""Packing plain Python callables (`p2pfaas.client.callables`): what the bundle holds, that the
same function packs to the same version, and that a node's answer is never unpickled. Running
them on nodes: tests/client/test_executor.py (process executor) and tests/node/test_node_api.py
(Docker and process)."""

from __future__ import annotations

import base64
import io
import pickle
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from p2pfaas.bundle import verify_bundle
from p2pfaas.client import callables
from p2pfaas.client.callables import CallableResultError, call_payload, pack_callable, result_of
from p2pfaas.client.values import encode
from p2pfaas.errors import LocalError
from p2pfaas.identity import KeyPair

KEYS = KeyPair.generate()


def square(x: int) -> int:
    return x * x


def names_in(archive: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return set(tar.getnames())


def test_a_function_packs_into_a_signed_bundle_with_its_runtime_and_no_compiled_code() -> None:
    packed = pack_callable(square, KEYS, memory_mb=64, timeout_s=3.0)
    verify_bundle(packed.bundle, owner=KEYS.public.raw)
    manifest = packed.bundle.header.manifest
    assert packed.ref == f"py-square@{manifest.version}" and manifest.name == "py-square"
    assert (manifest.memory_mb, manifest.timeout_s, manifest.handler) == (64, 3.0, "_p2pfaas_entry:handle")
    names = names_in(packed.bundle.archive)
    assert {"function.pkl", "_p2pfaas_entry.py", "_p2pfaas_values.py", "cloudpickle/__init__.py"} <= names
    assert "msgpack/fallback.py" in names and not any(n.endswith(".so") for n in names)


def test_the_same_function_packs_to_the_same_version_and_a_changed_one_to_another() -> None:
    def make(k: int) -> Any:
        return lambda x: x + k

    assert pack_callable(square, KEYS).bundle == pack_callable(square, KEYS).bundle
    one, two = pack_callable(make(1), KEYS), pack_callable(make(2), KEYS)
    assert one.ref.split("@")[0] == two.ref.split("@")[0] == "py-lambda" and one.ref != two.ref


def test_what_cannot_be_packed_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = threading.Lock()
    with pytest.raises(LocalError, match="cannot pickle"):
        pack_callable(lambda: lock.locked(), KEYS)
    with pytest.raises(LocalError, match="cannot pickle the arguments"):
        call_payload((lock,), {})
    with pytest.raises(LocalError, match="not callable"):
        pack_callable(42, KEYS)  # type: ignore[arg-type]
    monkeypatch.setattr(callables, "RUNTIME_PYTHON", (3, 99))
    with pytest.raises(LocalError, match="runs only on the Python it was pickled on"):
        pack_callable(square, KEYS)


def test_a_hostile_answer_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    crafted = base64.b64encode(pickle.dumps(Exploit())).decode()
    for output in ({"p2pfaas-values": 1, "data": crafted}, {"p2pfaas-values": 1, "data": "!!"}, [1], None):
        with pytest.raises(CallableResultError):
            result_of(output)
    assert not marker.exists()
    assert result_of({"p2pfaas-values": 1, "data": base64.b64encode(encode((1, b"x"))).decode()}) == (1, b"x")
