"""The project's error hierarchy, in one place.

Two branches matter to callers: `LocalError` means *you* misused the API or gave bad input;
`RemoteError` means a peer (node, anchor, container) misbehaved or refused. Builtin mixins are
added where callers expect them (`InvokeTimeout` is also a `TimeoutError`), as in aiohttp's
`client_exceptions.py`.
"""

from __future__ import annotations


class P2PFaaSError(Exception):
    """Base of every error this package raises on purpose."""


# --- you misused the API, or your input is bad -------------------------------------------------


class LocalError(P2PFaaSError):
    """The caller misused the API or handed us bad input."""


class ConfigError(LocalError, ValueError):
    """A configuration value or command-line option is invalid."""


class KeyFileError(LocalError):
    """A key file is missing, malformed, or has unsafe permissions."""


class BundleError(LocalError, ValueError):
    """A function directory or bundle is malformed, or fails verification."""


class ManifestError(BundleError):
    """A function manifest is missing a field or has an invalid value."""


# --- our own infrastructure failed -------------------------------------------------------------


class StorageError(P2PFaaSError):
    """The database failed, or stayed unavailable through every retry.

    Raised by `p2pfaas.db` and the stores built on it, chained to the driver's exception. If the
    connection died during COMMIT the write may have landed; store operations are idempotent, so
    repeating one later is safe.
    """


# --- a peer misbehaved, refused, or failed ------------------------------------------------------


class RemoteError(P2PFaaSError):
    """A peer sent something wrong, refused us, or failed."""


class DecodeError(RemoteError, ValueError):
    """Bytes from the wire are not a valid message (bad MessagePack, type, size or version)."""


class SignatureError(RemoteError):
    """A signature does not verify, or a key does not match its claimed identity."""


class NotFound(RemoteError, LookupError):
    """The peer does not know the function, bundle or record asked for."""


class Refused(RemoteError):
    """The peer refused the request (HTTP 4xx other than 404, or 'busy')."""

    def __init__(self, reason: str, *, status: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Busy(Refused):
    """The node has no room now and its queue is full (HTTP 503, code "busy").

    `peer` is the node's best guess of a peer with room ("" if it knows none); the reason names it.
    """

    def __init__(self, reason: str, *, peer: str = "") -> None:
        super().__init__(f"{reason}; a peer with room: {peer}" if peer else reason, status=503)
        self.peer = peer


class Unreachable(RemoteError, ConnectionError):
    """No peer could be reached to do the work."""


class NotSent(Unreachable):
    """The peer could not be reached, and nothing of the request left this process: no connection (refused,
    no route), or a relay that opened no tunnel. Trying elsewhere cannot make it run twice."""


class IdentityMismatch(NotSent):
    """The peer at a URL could not prove the identity the URL names (p2pfaas.tls): a man in the middle,
    or another machine at that address now. Nothing was sent to it."""


# --- an invocation failed -----------------------------------------------------------------------


class InvokeError(RemoteError):
    """An invocation did not produce a result. `invocation_id` says which one."""

    def __init__(self, message: str, *, invocation_id: str = "", node_id: str = "") -> None:
        super().__init__(message)
        self.invocation_id = invocation_id
        self.node_id = node_id
        self.logs = ""  # what the call printed before it failed, when a node reported it


class FunctionFailed(InvokeError):
    """The function raised; `error_type` and `traceback` are the function's own."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str = "",
        traceback: str = "",
        invocation_id: str = "",
        node_id: str = "",
    ) -> None:
        super().__init__(message, invocation_id=invocation_id, node_id=node_id)
        self.error_type = error_type
        self.traceback = traceback


class UnencodableResult(FunctionFailed):
    """A packed Python callable returned a value that cannot travel safely back (results are never
    pickled: `p2pfaas.client.values` says which types can); `error_message` names the type."""


class InvokeTimeout(InvokeError, TimeoutError):
    """The function ran past its timeout and was killed."""


class MemoryExceeded(InvokeError, MemoryError):
    """The function exceeded its memory limit and was killed."""


class ExecutorError(InvokeError):
    """The executor itself failed (container died, shim broke, engine unreachable)."""
