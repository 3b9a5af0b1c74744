"""MessagePack over HTTP: how anchors, nodes and clients exchange wire messages.

Server side: `read_message` decodes a request body into one expected message type, and
`error_middleware` turns our exceptions into an `ErrorReply` with the right status (400 malformed,
403 bad signature or not allowed, 404 unknown, 503 busy), so handlers only raise.
Client side: `call` posts or gets one message and decodes the answer, turning an `ErrorReply` back
into the matching exception and transport failures into `Unreachable`.

This module knows no routes; those live with the anchor and node apps.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import aiohttp
from aiohttp import web

from p2pfaas import codec, tls, tunnel
from p2pfaas.errors import (
    DecodeError,
    IdentityMismatch,
    NotFound,
    NotSent,
    P2PFaaSError,
    Refused,
    RemoteError,
    SignatureError,
    Unreachable,
)
from p2pfaas.messages import ErrorReply

CONTENT_TYPE = "application/x-msgpack"
MAX_ERROR_BYTES = 64 * 1024  # of an error reply read (it says why in a line)
log = logging.getLogger(__name__)

M = TypeVar("M", bound=codec.Message)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Forbidden(RemoteError):
    """Raised by a handler when a correctly signed request is not allowed (maps to 403)."""


class Unauthorized(Refused):
    """Raised by a handler when the caller did not prove who it is: no or a bad token (maps to 401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=401)


class Busy(Refused):
    """Raised by a handler when the peer has no room now (maps to 503)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=503)


# --- server side ---------------------------------------------------------------------------------


def reply(msg: codec.Message, *, status: int = 200) -> web.Response:
    return web.Response(body=codec.encode(msg), status=status, content_type=CONTENT_TYPE)


def error_reply(status: int, code: str, reason: str) -> web.Response:
    return reply(ErrorReply(code=code, reason=reason[:4000]), status=status)


async def read_message(request: web.Request, cls: type[M]) -> M:
    """Decode the request body as a `cls`; a bad body raises DecodeError (-> 400)."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise DecodeError("request body is larger than this server accepts") from None
    return codec.decode_as(cls, body)


_HTTP_CODES = {
    400: "malformed", 403: "forbidden", 404: "not-found", 405: "method-not-allowed", 413: "too-large",
}  # fmt: skip


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map our exceptions, and aiohttp's HTTP errors, to ErrorReply answers (one shape for every
    error a peer gets); nothing a peer sends may crash the server."""
    try:
        return await handler(request)
    except web.HTTPException as exc:  # aiohttp's own: no route (404), wrong method (405), too large (413)
        if exc.status < 400:
            raise
        response = error_reply(exc.status, _HTTP_CODES.get(exc.status, "refused"), exc.reason)
        for name in ("Allow", "WWW-Authenticate"):  # what the status needs said beside the body
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except DecodeError as exc:
        return error_reply(400, "malformed", str(exc))
    except SignatureError as exc:
        return error_reply(403, "bad-signature", str(exc))
    except Forbidden as exc:
        return error_reply(403, "forbidden", str(exc))
    except NotFound as exc:
        return error_reply(404, "not-found", str(exc))
    except Unauthorized as exc:
        response = error_reply(401, "unauthorized", exc.reason)
        response.headers["WWW-Authenticate"] = 'Bearer realm="p2pfaas"'
        return response
    except Refused as exc:
        return error_reply(exc.status or 400, "busy" if exc.status == 503 else "refused", exc.reason)
    except P2PFaaSError as exc:
        log.warning("%s %s failed: %s", request.method, request.path, exc)
        return error_reply(400, "refused", f"{type(exc).__name__}: {exc}")
    except Exception:
        log.exception("internal error serving %s %s", request.method, request.path)
        return error_reply(500, "internal", "internal error; see the server's log")


# --- client side ---------------------------------------------------------------------------------


GATEWAY_FAILURES = (502, 504)  # Bad Gateway, Gateway Timeout: the peer behind a gateway is not there


def _error_from_reply(status: int, body: bytes, url: str) -> P2PFaaSError:
    try:
        err = codec.decode_as(ErrorReply, body)
        code, reason = err.code, err.reason
    except DecodeError:
        code, reason = "http", f"HTTP {status} from {url} (no ErrorReply body)"
    if status == 404:
        return NotFound(reason)
    if status in GATEWAY_FAILURES:  # a relay could not reach the node behind it (p2pfaas.relay)
        return Unreachable(f"{url}: {code}: {reason}")
    return Refused(f"{code}: {reason}", status=status)


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    expect: type[M],
    msg: codec.Message | None = None,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> M:
    """Send `msg` (or nothing) to `url` and decode the answer as `expect`.

    Raises NotFound / Refused for an ErrorReply, DecodeError for a malformed answer, and
    Unreachable when the peer cannot be reached or does not answer within `timeout_s` (also when a
    relay answers 502/504 for the node behind it). Redirects are never followed (a 3xx is an
    error): a peer must not steer our requests elsewhere.
    `headers` adds request headers (e.g. `Authorization: Bearer ...` for the anchor's account routes).
    """
    data = codec.encode(msg) if msg is not None else None
    sent = dict(headers or {})
    if data is not None:
        sent["Content-Type"] = CONTENT_TYPE
    body = await request_bytes(session, method, url, data, timeout_s=timeout_s, headers=sent)
    return codec.decode_as(expect, body)


async def request_bytes(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    data: bytes | None = None,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
    max_bytes: int | None = None,
) -> bytes:
    """Send raw `data` (or nothing) to `url` and return the raw answer, read as it streams in and
    refused (DecodeError) past `max_bytes`. Errors as for `call`."""
    if session.closed:  # this process is shutting down (a draining node's last forwards): not a bug
        raise Unreachable(f"{method} {url}: not sent, this process is closing its connections")
    target, relay = tunnel.route(url)  # a node behind NAT: TLS to it through its relay (p2pfaas.tunnel)
    headers = dict(headers or {})
    if relay is not None:
        if not isinstance(session.connector, tunnel.PeerConnector):
            raise NotSent(f"{method} {url}: relayed, and this session cannot tunnel (tunnel.session)")
        headers[tunnel.VIA_HEADER] = relay
    try:
        async with session.request(
            method,
            target,
            # Large bodies (wheels) as a stream: aiohttp would otherwise copy them on the loop.
            data=io.BytesIO(data) if data is not None and len(data) > 1 << 20 else data,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
            ssl=tls.ssl_for(target),  # an https node URL pins the identity it names
        ) as response:
            status = response.status
            if status >= 300:
                body = await response.content.read(MAX_ERROR_BYTES)
            elif max_bytes is None:
                body = await response.read()
            else:
                parts, received = [], 0
                async for part in response.content.iter_chunked(1 << 20):
                    received += len(part)
                    if received > max_bytes:
                        raise DecodeError(f"{method} {url}: the answer is larger than {max_bytes} bytes")
                    parts.append(part)
                body = b"".join(parts)
    except aiohttp.ServerFingerprintMismatch:
        raise IdentityMismatch(
            f"{method} {url}: the peer could not prove it is node {tls.identity_of(target)}; nothing was sent"
        ) from None
    except (aiohttp.ClientConnectorError, tunnel.TunnelRefused) as exc:  # no connection was made
        raise NotSent(f"{method} {url}: {type(exc).__name__}: {exc}") from None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise Unreachable(f"{method} {url}: {type(exc).__name__}: {exc}") from None
    if status >= 300:
        raise _error_from_reply(status, body, url)
    return body
