"""What an invocation returned (`p2pfaas.client.outcome`): a node's signed result checked, then its
value, or the typed error it reports with the call's output attached."""

from __future__ import annotations

import dataclasses

import pytest

from p2pfaas import signing
from p2pfaas.client.outcome import decode_outcome
from p2pfaas.errors import ExecutorError, FunctionFailed, InvokeTimeout, MemoryExceeded, SignatureError
from p2pfaas.identity import KeyPair
from p2pfaas.messages import (
    ERROR_EXECUTOR,
    ERROR_MEMORY,
    ERROR_TIMEOUT,
    InvokeRequest,
    InvokeResult,
    NodeInfo,
)

NODE, OTHER = KeyPair.from_seed(b"n" * 32), KeyPair.from_seed(b"o" * 32)
INFO = NodeInfo(NODE.key_id, NODE.public.raw, "http://10.0.0.1:8800", ("python3.11",), 2.0, 1024)
REQUEST = InvokeRequest("i1", "ab" * 32, b"{}", 5.0, None, signer=b"", signature=b"")


def result(keys: KeyPair = NODE, **change: object) -> InvokeResult:
    unsigned = InvokeResult("i1", "ab" * 32, True, b'{"x": 1}', "", "", "", 0.25, True, None, b"", b"")
    return signing.sign(dataclasses.replace(unsigned, **change), keys)  # type: ignore[arg-type]


def test_a_good_result_is_its_value_and_where_it_ran() -> None:
    outcome = decode_outcome(REQUEST, result(logs="hi\n"), INFO)
    assert (outcome.value, outcome.node_id, outcome.node_url) == ({"x": 1}, NODE.key_id, INFO.url)
    assert (outcome.duration_s, outcome.cold, outcome.price_micro, outcome.logs) == (0.25, True, 0, "hi\n")
    assert decode_outcome(REQUEST, result(output=b""), INFO).value is None


def test_a_result_that_is_not_this_nodes_answer_to_this_request_is_a_signature_error() -> None:
    with pytest.raises(SignatureError, match="another key"):
        decode_outcome(REQUEST, result(OTHER), INFO)
    forged = dataclasses.replace(result(), output=b'{"x": 2}')
    with pytest.raises(SignatureError):
        decode_outcome(REQUEST, forged, INFO)
    with pytest.raises(SignatureError, match="different invocation"):
        decode_outcome(REQUEST, result(invocation_id="i2"), INFO)


@pytest.mark.parametrize(
    ("error_type", "raised"),
    [
        (ERROR_TIMEOUT, InvokeTimeout),
        (ERROR_MEMORY, MemoryExceeded),
        (ERROR_EXECUTOR, ExecutorError),
        ("KeyError", FunctionFailed),
    ],
)
def test_a_failure_is_its_typed_error_naming_the_call(error_type: str, raised: type[Exception]) -> None:
    failed = result(
        ok=False, output=b"", error_type=error_type, error_message="m", traceback="tb", logs="out"
    )
    with pytest.raises(raised) as caught:
        decode_outcome(REQUEST, failed, INFO)
    error = caught.value
    assert isinstance(error, InvokeTimeout | MemoryExceeded | ExecutorError | FunctionFailed)
    assert (error.invocation_id, error.node_id, error.logs) == ("i1", NODE.key_id, "out")
    if isinstance(error, FunctionFailed):
        assert (error.error_type, error.traceback, str(error)) == ("KeyError", "tb", "KeyError: m")


def test_output_that_is_not_json_is_an_executor_error() -> None:
    with pytest.raises(ExecutorError, match="not JSON"):
        decode_outcome(REQUEST, result(output=b"{nope"), INFO)
