"""Plain Python callables as functions of the network: packed by value, results never unpickled.

`pack_callable(f, keys)` pickles `f` by value with cloudpickle (a function of a script, a notebook
cell, a closure or a lambda; the user's own modules go by value too, installed packages by
reference) and writes a bundle around it: the pickle, a small entry module (`ENTRY`), this
package's `values` codec, and the pure-Python sources of cloudpickle and msgpack (the runtime image
holds the standard library only). Its name is `py-<function name>` and its version the first 16 hex
digits of the pickle's SHA-256, so the same function packs to the same immutable version, and a
changed one to a new one.

`call_payload(args, kwargs)` is the JSON payload of one call: the arguments pickled (they are
unpickled only inside the sandbox, by the lessee's own code). `result_of(output)` turns what came
back into the return value: the node's bytes are MessagePack (`values.decode`), never a pickle,
so a hostile node can send a wrong value but cannot run code on the lessee's machine.

`Callables(client)` puts it together over an `AsyncClient`: `await callables.run(f, *args,
**kwargs)` packs and deploys `f` on its first call (once per version, whatever the calls in
flight) and returns its value (`Executor.submit(f, ...)` does the same from threads).

A pickled code object runs only on the Python it was made with: packing refuses, with a clear
error, on another minor version than the runtime's (`RUNTIME_PYTHON`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import json
import re
import sys
import sysconfig
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle
import msgpack

from p2pfaas.bundle import make_bundle
from p2pfaas.bundle.lock import Lock
from p2pfaas.bundle.resolve import lock_directory
from p2pfaas.client import values
from p2pfaas.client.async_client import AsyncClient
from p2pfaas.client.outcome import InvokeOutcome
from p2pfaas.errors import DecodeError, FunctionFailed, LocalError, UnencodableResult
from p2pfaas.identity import KeyPair
from p2pfaas.messages import Bundle

__all__ = [
    "RUNTIME_PYTHON",
    "CallableResultError",
    "Callables",
    "Packed",
    "call_payload",
    "outcome_value",
    "pack_callable",
    "result_of",
]

RUNTIME_PYTHON = (3, 11)  # the runtime image's CPython (`bundle.manifest.SUPPORTED_RUNTIMES`)
OFF_LOOP_BYTES = 64 * 1024  # results larger than this are decoded in a thread
RESULT_KEY = "p2pfaas-values"  # the entry's answer: {RESULT_KEY: 1, "data": base64 of values.encode}

ENTRY = '''"""Runs a Python callable packed by value by a lessee's client (p2pfaas.client.callables)."""
import base64
import os
import pickle
import sys

import _p2pfaas_values

PYTHON = {python!r}
_function = None


def handle(payload):
    global _function
    if tuple(sys.version_info[:2]) != PYTHON:
        raise RuntimeError(f"packed on Python {{PYTHON}}, cannot run on {{sys.version_info[:2]}}")
    if _function is None:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "function.pkl"), "rb") as f:
            _function = pickle.load(f)
    args, kwargs = pickle.loads(base64.b64decode(payload["args"]))
    result = _function(*args, **kwargs)
    data = _p2pfaas_values.encode(result)
    return {{{key!r}: 1, "data": base64.b64encode(data).decode("ascii")}}
'''


class CallableResultError(DecodeError):
    """A node's answer to a packed callable is not a value `values.decode` accepts."""


@dataclass(frozen=True)
class Packed:
    bundle: Bundle
    ref: str  # "name@version", what to invoke
    lock: Lock | None = None  # the wheels of its requirements, uploaded before the bundle


def pack_callable(
    fn: Callable[..., Any],
    keys: KeyPair,
    *,
    memory_mb: int = 128,
    timeout_s: float = 10.0,
    requirements: Sequence[str] = (),
) -> Packed:
    """A signed bundle that runs `fn` (see the module's docstring), with the wheels of
    `requirements` (resolved by pip, `p2pfaas.bundle.resolve`) as its dependency layer; raises
    `LocalError` when it cannot be packed (another Python than the runtime's, or a value cloudpickle
    cannot pickle), `BundleError` for requirements with no wheel for the runtime."""
    if not callable(fn):
        raise LocalError(f"{fn!r:.80} is not callable")
    if sys.version_info[:2] != RUNTIME_PYTHON:
        raise LocalError(
            f"this Python is {sys.version_info[0]}.{sys.version_info[1]}, the network runs "
            f"{RUNTIME_PYTHON[0]}.{RUNTIME_PYTHON[1]}: a function pickled by value runs only on the "
            "Python it was pickled on. Use that version, or deploy a function directory (fn deploy)"
        )
    with _by_value(fn):
        try:
            pickled = cloudpickle.dumps(fn, protocol=5)
        except Exception as error:  # cloudpickle raises what the value's __reduce__ raises
            raise LocalError(f"cannot pickle {_name(fn)}: {type(error).__name__}: {error}") from error
    name = "py-" + (re.sub(r"[^a-z0-9_-]+", "-", _name(fn).lower()).strip("-_") or "function")[:60]
    listed = sorted(str(r) for r in requirements)
    version = hashlib.sha256(pickled + json.dumps(listed).encode()).hexdigest()[:16]
    with tempfile.TemporaryDirectory(prefix="p2pfaas-callable-") as tmp:
        root = Path(tmp)
        (root / "p2pfaas.toml").write_text(
            f'name = "{name}"\nversion = "{version}"\nhandler = "_p2pfaas_entry:handle"\n'
            f"memory_mb = {int(memory_mb)}\ntimeout_s = {float(timeout_s)!r}\n"
            + (f"requirements = {json.dumps(listed)}\n" if listed else "")
        )
        (root / "_p2pfaas_entry.py").write_text(ENTRY.format(python=RUNTIME_PYTHON, key=RESULT_KEY))
        (root / "_p2pfaas_values.py").write_bytes(Path(values.__file__).read_bytes())
        (root / "function.pkl").write_bytes(pickled)
        for package in (cloudpickle, msgpack):
            _copy_sources(package, root)
        lock = lock_directory(root)
        return Packed(make_bundle(root, keys), f"{name}@{version}", lock)


def call_payload(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    """The JSON payload of one call of a packed callable on `args` and `kwargs`."""
    try:
        pickled = cloudpickle.dumps((args, kwargs), protocol=5)
    except Exception as error:
        raise LocalError(f"cannot pickle the arguments: {type(error).__name__}: {error}") from error
    return {"args": base64.b64encode(pickled).decode("ascii")}


def result_of(output: Any) -> Any:
    """The return value in a packed callable's answer `output` (its JSON, decoded); raises
    `CallableResultError` for anything else. Never unpickles."""
    if not (isinstance(output, dict) and output.get(RESULT_KEY) == 1 and isinstance(output.get("data"), str)):
        raise CallableResultError(f"the node's answer is not a packed callable's result: {output!r:.100}")
    try:
        return values.decode(base64.b64decode(output["data"], validate=True))
    except ValueError as error:  # binascii.Error is a ValueError too
        raise CallableResultError(f"the node's answer does not decode: {error}") from None


async def outcome_value(pending: Awaitable[InvokeOutcome]) -> Any:
    """The return value of a packed callable's call `pending`; `UnencodableResult` when the
    function returned a value that cannot travel, `FunctionFailed` when it raised."""
    try:
        outcome = await pending
    except FunctionFailed as error:
        if error.error_type != UnencodableResult.__name__:
            raise
        raise UnencodableResult(
            str(error),
            error_type=error.error_type,
            traceback=error.traceback,
            invocation_id=error.invocation_id,
            node_id=error.node_id,
        ) from None
    if isinstance(outcome.value, dict) and len(str(outcome.value.get("data", ""))) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(result_of, outcome.value)  # a big value: not on the loop
    return result_of(outcome.value)


@dataclass
class Callables:
    """Python callables run on the network through `client`, each packed and deployed once."""

    client: AsyncClient
    memory_mb: int = 128
    timeout_s: float = 10.0
    requirements: Sequence[str] = ()  # of every callable: their wheels form its dependency layer
    _refs: dict[Callable[..., Any], str] = field(default_factory=dict)  # callable -> "name@version"
    _deploying: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ref(self, fn: Callable[..., Any]) -> str:
        """What to invoke for `fn`: packed and deployed on the first call."""
        async with self._deploying:
            ref = self._refs.get(fn)
            if ref is None:
                packed = await asyncio.to_thread(
                    pack_callable,
                    fn,
                    self.client.keys,
                    memory_mb=self.memory_mb,
                    timeout_s=self.timeout_s,
                    requirements=self.requirements,
                )
                await self.client.deploy_bundle(packed.bundle, lock=packed.lock)
                ref = self._refs[fn] = packed.ref
            return ref

    async def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)`, run on the network."""
        payload = call_payload(args, kwargs)
        ref = await self.ref(fn)
        return await outcome_value(self.client.invoke(ref, payload, timeout_s=self.timeout_s))


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__name__", type(fn).__name__))


def _copy_sources(package: ModuleType, root: Path) -> None:
    """Copy `package`'s Python sources (no compiled modules, no caches) under `root`."""
    source = Path(package.__file__ or "").parent
    for path in sorted(source.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        target = root / package.__name__ / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())


@contextmanager
def _by_value(fn: Callable[..., Any]) -> Iterator[None]:
    """Pickle `fn`'s module by value while inside, when it is the user's own code (not the standard
    library nor an installed package, which the sandbox could not import by name anyway)."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if module is None or module.__name__ == "__main__" or not _is_users_own(module):
        yield
        return
    top = sys.modules.get(module.__name__.split(".")[0], module)
    cloudpickle.register_pickle_by_value(top)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(top)


def _is_users_own(module: ModuleType) -> bool:
    spec = importlib.util.find_spec(module.__name__.split(".")[0]) if module.__name__ else None
    origin = (spec.origin if spec else None) or getattr(module, "__file__", None)
    if not origin or origin in ("built-in", "frozen"):
        return False
    installed = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    path = str(Path(origin).resolve())
    return not any(path.startswith(str(Path(p).resolve())) for p in installed)
