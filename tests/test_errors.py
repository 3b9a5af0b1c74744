"""The error hierarchy (`p2pfaas.errors`): local and remote branches, the builtin mixins callers catch,
and what each error carries."""

from __future__ import annotations

import pytest

from p2pfaas import errors


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (errors.ConfigError, (errors.LocalError, ValueError)),
        (errors.ManifestError, (errors.BundleError, errors.LocalError, ValueError)),
        (errors.DecodeError, (errors.RemoteError, ValueError)),
        (errors.NotFound, (errors.RemoteError, LookupError)),
        (errors.Busy, (errors.Refused, errors.RemoteError)),
        (errors.IdentityMismatch, (errors.Unreachable, ConnectionError)),
        (errors.InvokeTimeout, (errors.InvokeError, TimeoutError)),
        (errors.MemoryExceeded, (errors.InvokeError, MemoryError)),
        (errors.UnencodableResult, (errors.FunctionFailed, errors.InvokeError)),
        (errors.StorageError, (errors.P2PFaaSError,)),
    ],
)
def test_each_error_is_what_its_callers_catch(
    error: type[Exception], bases: tuple[type[Exception], ...]
) -> None:
    assert all(issubclass(error, base) for base in (*bases, errors.P2PFaaSError))
    local, remote = issubclass(error, errors.LocalError), issubclass(error, errors.RemoteError)
    assert not (local and remote)


def test_refusals_keep_their_reason_and_status() -> None:
    refused = errors.Refused("over budget", status=402)
    assert (refused.reason, refused.status, str(refused)) == ("over budget", 402, "over budget")
    assert errors.Refused("no").status == 0
    busy = errors.Busy("queue full", peer="http://peer:1")
    assert busy.status == 503 and busy.peer == "http://peer:1"
    assert busy.reason == "queue full; a peer with room: http://peer:1"
    assert errors.Busy("queue full").reason == "queue full"


def test_invocation_errors_name_the_call_and_the_functions_own_error() -> None:
    failed = errors.FunctionFailed(
        "boom", error_type="KeyError", traceback="Traceback ...", invocation_id="i1", node_id="n1"
    )
    assert (failed.error_type, failed.traceback, failed.invocation_id, failed.node_id) == (
        "KeyError",
        "Traceback ...",
        "i1",
        "n1",
    )
    assert failed.logs == ""
    timeout = errors.InvokeTimeout("too slow", invocation_id="i2")
    assert timeout.invocation_id == "i2" and timeout.node_id == "" and str(timeout) == "too slow"
