"""`OnceTable`: each id's phase here, its owner, and how long its result is kept."""

from __future__ import annotations

import asyncio

import pytest

from p2pfaas import signing
from p2pfaas.errors import Refused, SignatureError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import InvokeRequest, InvokeResult
from p2pfaas.node.once import OnceTable, Phase, same_invocation

LESSEE, OTHER, NODE = (KeyPair.from_seed(bytes([n]) * 32) for n in (1, 2, 3))
DIGEST = "ab" * 32


def request(invocation_id: str, keys: KeyPair = LESSEE, digest: str = DIGEST) -> InvokeRequest:
    unsigned = InvokeRequest(invocation_id, digest, b"{}", 5.0, None, signer=b"", signature=b"")
    return signing.sign(unsigned, keys)


def result(invocation_id: str, digest: str = DIGEST) -> InvokeResult:
    unsigned = InvokeResult(
        invocation_id, digest, True, b"1", "", "", "", 0.01, False, None, signer=b"", signature=b""
    )
    return signing.sign(unsigned, NODE)


def phase_of(table: OnceTable, req: InvokeRequest) -> Phase | None:
    entry = table.lookup(req, now=0.0)
    return None if entry is None else entry.phase


async def test_an_id_runs_forwards_and_is_done_once_then_its_result_is_kept() -> None:
    table = OnceTable(cache_size=10, ttl_s=60.0)
    req = request("a")
    assert table.lookup(req, now=0.0) is None and not table.knows("a")
    task: asyncio.Future[InvokeResult] = asyncio.get_running_loop().create_future()
    table.start(req, task)
    entry = table.lookup(req, now=0.0)
    assert entry is not None and entry.phase is Phase.RUNNING and entry.task is task and len(table) == 1
    with table.forwarding("a"):
        assert phase_of(table, req) is Phase.FORWARDING
    assert phase_of(table, req) is Phase.RUNNING
    table.finish("a", result("a"), now=1.0)
    done = table.lookup(req, now=30.0)
    assert done is not None and done.phase is Phase.DONE and done.result == result("a") and len(table) == 0
    assert table.lookup(req, now=61.5) is None  # kept for ttl_s after it finished, then forgotten


async def test_another_lessee_or_function_under_a_known_id_is_refused() -> None:
    table = OnceTable()
    table.start(request("a"), asyncio.get_running_loop().create_future())
    for intruder in (request("a", keys=OTHER), request("a", digest="cd" * 32)):
        with pytest.raises(Refused) as refused:
            table.lookup(intruder, now=0.0)
        assert refused.value.status == 409


async def test_a_failed_id_is_forgotten_and_the_cache_keeps_the_newest() -> None:
    table = OnceTable(cache_size=2, ttl_s=600.0)
    for name in "abcd":
        table.start(request(name), asyncio.get_running_loop().create_future())
    table.finish("a", None, now=0.0)  # failed or cancelled: the lessee may try it again
    for at, name in enumerate("bcd"):
        table.finish(name, result(name), now=float(at))
    assert [table.knows(name) for name in "abcd"] == [False, False, True, True]


def test_a_result_for_another_invocation_is_refused() -> None:
    assert same_invocation(request("a"), result("a")) == result("a")
    with pytest.raises(SignatureError):
        same_invocation(request("a"), result("b"))
